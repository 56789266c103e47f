"""Short-lived stream tokens and per-user credentials.

Tokens are JWTs (RFC 7519) signed with HS256, carrying ``sub`` (the user), ``iat``,
``exp`` and a random ``jti``. Browsers cannot set headers on a WebSocket or an
EventSource, so streams carry the token in the query string; the short lifetime
(30 s by default) bounds the damage of a token that leaks into a proxy log.

A user's login secret is derived from the realm secret (HMAC-SHA256), so that a
load generator holding the realm secret can log in as any of 100,000 users without
a credential file.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt

from servers.core.errors import AuthError
from servers.core.protocol import user_secret

__all__ = ["Claims", "TokenIssuer", "user_secret"]

DEFAULT_TOKEN_TTL_S = 30
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    user: str
    jti: str
    expires_at: float


class TokenIssuer:
    """Issue and verify tokens; the current time is passed in as Unix seconds.

    >>> issuer = TokenIssuer("k" * 32)
    >>> issuer.verify(issuer.issue("alice", now=1000.0), now=1010.0).user
    'alice'
    """

    def __init__(self, key: str, *, ttl_s: int = DEFAULT_TOKEN_TTL_S) -> None:
        if len(key) < 32:
            raise ValueError("token key must be at least 32 characters")
        self._key = key
        self.ttl_s = ttl_s

    def issue(self, user: str, *, now: float) -> str:
        issued = int(now)
        payload = {
            "sub": user,
            "iat": issued,
            "exp": issued + self.ttl_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str | None, *, now: float) -> Claims:
        """Return the claims, or raise :class:`AuthError` (401 missing, 403 invalid or expired)."""
        if not token:
            raise AuthError(401, "missing token")
        try:
            # Expiry is checked below against the caller's clock, not PyJWT's.
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["sub", "exp", "jti"],
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(403, f"invalid token: {type(exc).__name__}") from None
        expires_at = float(payload["exp"])
        if now >= expires_at:
            raise AuthError(403, f"token expired {now - expires_at:.0f} s ago")
        return Claims(user=str(payload["sub"]), jti=str(payload["jti"]), expires_at=expires_at)
