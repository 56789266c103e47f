"""Endpoints shared by every transport, written against plain values.

``POST /v1/auth/token``            ``{user, secret}`` → ``{token, expires_in}``
``POST /v1/admin/balances``        ``{user, dao, balance}`` with ``X-Admin-Key``
``POST /v1/channels/{ch}/messages`` ``{body, cid?, hlc?}``, ``?sid=`` of the SSE stream
``POST /v1/presence/heartbeat``    ``?sid=``
``POST /v1/echo``                  ``{body}``, ``?sid=``; answered on the stream
``GET  /metrics``                  Prometheus text

The three client POSTs act for the SSE stream named by ``sid`` (from its ``hello``
event): replies (``ack``, ``echo``, ``error``) arrive on that stream, as they would on a
WebSocket, and the POST answers ``202`` once the frame is handed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from servers.core.errors import AuthError, ChannelError
from servers.core.protocol import HEARTBEAT_FRAME
from servers.core.realm import parse_channel
from servers.hub import Hub
from servers.session import Session, Transport


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


class Refusal(Exception):
    """A request refused before any stream starts."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def reply(self) -> Reply:
        return _error(self.status, self.reason)


def _error(status: int, reason: str) -> Reply:
    return Reply(status, orjson.dumps({"error": reason}))


ACCEPTED = Reply(202, b"{}")


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, f"malformed JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise Refusal(400, "the body must be a JSON object")
    return value


def token(hub: Hub, body: bytes) -> Reply:
    try:
        data = _json(body)
        user, secret = data.get("user"), data.get("secret")
        if not isinstance(user, str) or not isinstance(secret, str):
            raise Refusal(400, "'user' and 'secret' must be strings")
        issued = hub.login(user, secret)
    except Refusal as exc:
        return exc.reply()
    except AuthError as exc:
        return _error(exc.status, exc.reason)
    return Reply(200, orjson.dumps({"token": issued, "expires_in": hub.issuer.ttl_s}))


async def set_balance(hub: Hub, admin_key: str | None, body: bytes) -> Reply:
    if admin_key is None or admin_key != hub.admin_key:
        return _error(403, "wrong or missing X-Admin-Key")
    try:
        data = _json(body)
        balance = data.get("balance")
        if type(balance) is not int or balance < 0:
            raise Refusal(400, "'balance' must be an integer >= 0")
        await hub.set_balance(str(data.get("user")), str(data.get("dao")), balance)
    except Refusal as exc:
        return exc.reply()
    except ChannelError as exc:
        return _error(404, str(exc))
    return Reply(204)


async def client_post(
    hub: Hub, kind: str, sid: str | None, body: bytes, ch: str | None = None
) -> Reply:
    """Turn an SSE client's POST into the frame a WebSocket client would have sent."""
    if not sid:
        return _error(400, "missing ?sid= (the sid of your SSE stream's hello event)")
    if kind == "hb":
        frame = HEARTBEAT_FRAME
    else:
        try:
            data = _json(body) if body else {}
        except Refusal as exc:
            return exc.reply()
        data["op"] = kind
        if ch is not None:
            data["ch"] = ch
        frame = orjson.dumps(data)
    if not await hub.forward(sid, frame):
        return _error(404, "no open stream with this sid")
    return ACCEPTED


def metrics(hub: Hub) -> Reply:
    return Reply(200, hub.metrics.render(hub.node).encode(), "text/plain; version=0.0.4")


def check_origin(hub: Hub, origin: str | None) -> None:
    allowed = hub.config.allowed_origins
    if allowed and origin not in allowed:
        raise Refusal(403, "origin not allowed")


def open_sse(
    hub: Hub,
    transport: Transport,
    *,
    token: str | None,
    channels: str | None,
    last_event_id: str | None,
    origin: str | None,
) -> Session:
    """Authenticate and start joining; raises :class:`Refusal` before any byte is streamed."""
    check_origin(hub, origin)
    try:
        user = hub.authenticate(token)
    except AuthError as exc:
        raise Refusal(exc.status, exc.reason) from None
    if hub.draining:
        raise Refusal(503, "server shutting down")
    order = [c for c in (channels or "").split(",") if c]
    if not order:
        raise Refusal(400, "missing ?ch= (comma-separated channels)")
    if len(set(order)) != len(order) or len(order) > 64:
        raise Refusal(400, "?ch= must list at most 64 distinct channels")
    for ch in order:
        try:
            hub.realm.room_rule(parse_channel(ch))
        except ChannelError as exc:
            raise Refusal(404, str(exc)) from None
    since: list[int | None] = [None] * len(order)
    if last_event_id:
        parts = last_event_id.split(",")
        if len(parts) != len(order) or not all(p.isdigit() for p in parts):
            raise Refusal(
                400, f"Last-Event-ID must hold {len(order)} offsets, one per channel in ?ch="
            )
        since = [int(p) for p in parts]
    session = hub.open(user, transport, sse_order=order)
    for ch, offset in zip(order, since, strict=True):
        hub.join(session, ch, offset)
    return session
