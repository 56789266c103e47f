"""Exceptions of the server core.

Tree::

    ServerError
    ├── ProtocolError        a client frame is malformed, unknown or too large
    ├── AuthError            missing (401) or invalid / expired (403) token
    ├── ClockDriftError      a remote HLC is further ahead than the drift bound
    ├── RealmError           a realm file is wrong
    └── ChannelError         a channel name is not ``dao:{dao}:{room}`` or is unknown
"""

from __future__ import annotations


class ServerError(Exception):
    """Root of every exception raised by :mod:`servers`."""


class ProtocolError(ServerError):
    """A client frame cannot be accepted; ``code`` is sent back in the ``error`` op."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class AuthError(ServerError):
    """Authentication failed; ``status`` is the HTTP status to answer with (401 or 403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClockDriftError(ServerError):
    """A received timestamp would pull the local clock forward by more than allowed."""


class RealmError(ServerError):
    """A realm definition is invalid."""


class ChannelError(ServerError):
    """A channel name is malformed or names no known DAO room."""
