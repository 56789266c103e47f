"""Presence per channel: who is online, with transitions only.

The founding article's scheme: each connection sends a silent heartbeat (every 60 s by
default); a connection not heard from for 90 s expires; the presence list is broadcast
only on a transition (a user's first connection in a channel comes online, its last one
leaves or expires), never on each heartbeat. A user with two connections who closes one
stays online.

:class:`PresenceTable` is the single-process model; the Redis broker keeps the same
state in a sorted set (score = last heartbeat) and must give the same transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_HEARTBEAT_S = 60.0
DEFAULT_EXPIRY_S = 90.0


class State(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Transition:
    channel: str
    user: str
    state: State


class PresenceTable:
    """channel → user → connection → last heartbeat (ms)."""

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, dict[str, int]]] = {}

    def join(self, channel: str, user: str, conn: str, now_ms: int) -> Transition | None:
        users = self._channels.setdefault(channel, {})
        conns = users.setdefault(user, {})
        first = not conns
        conns[conn] = now_ms
        return Transition(channel, user, State.ONLINE) if first else None

    def leave(self, channel: str, user: str, conn: str) -> Transition | None:
        users = self._channels.get(channel)
        if users is None:
            return None
        conns = users.get(user)
        if conns is None or conns.pop(conn, None) is None:
            return None
        if conns:
            return None
        del users[user]
        if not users:
            del self._channels[channel]
        return Transition(channel, user, State.OFFLINE)

    def heartbeat(self, channel: str, user: str, conn: str, now_ms: int) -> Transition | None:
        """Refresh a connection; an expired one that heartbeats comes back online."""
        conns = self._channels.get(channel, {}).get(user)
        if conns is not None and conn in conns:
            conns[conn] = max(conns[conn], now_ms)
            return None
        return self.join(channel, user, conn, now_ms)

    def sweep(self, now_ms: int, expiry_ms: int) -> list[Transition]:
        """Expire connections silent for over ``expiry_ms``; return the offline transitions."""
        deadline = now_ms - expiry_ms
        stale = [
            (channel, user, conn)
            for channel, users in self._channels.items()
            for user, conns in users.items()
            for conn, seen in conns.items()
            if seen < deadline
        ]
        out = []
        for channel, user, conn in stale:
            transition = self.leave(channel, user, conn)
            if transition is not None:
                out.append(transition)
        return out

    def members(self, channel: str) -> list[str]:
        return sorted(self._channels.get(channel, {}))

    def connections(self, channel: str) -> int:
        return sum(len(c) for c in self._channels.get(channel, {}).values())
