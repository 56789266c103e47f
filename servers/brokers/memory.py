"""In-memory broker: one process, no dependencies; the embedded default."""

from __future__ import annotations

from collections import deque
from typing import Any

from servers.brokers.base import Broker, History
from servers.core.presence import PresenceTable, Transition
from servers.core.protocol import msg_frame


class _Log:
    __slots__ = ("entries", "last_id")

    def __init__(self, maxlen: int) -> None:
        self.entries: deque[tuple[int, int, bytes]] = deque(maxlen=maxlen)
        self.last_id = 0


class MemoryBroker(Broker):
    def __init__(self, *, node: str, history_count: int, history_age_ms: int) -> None:
        super().__init__(node=node, history_count=history_count, history_age_ms=history_age_ms)
        self._logs: dict[str, _Log] = {}
        self._subscribed: set[str] = set()
        self._presence = PresenceTable()

    async def publish(self, ch: str, tail: bytes, now_ms: int) -> int:
        log = self._logs.get(ch)
        if log is None:
            log = self._logs[ch] = _Log(self.history_count)
        log.last_id += 1
        frame = msg_frame(log.last_id, tail)
        log.entries.append((log.last_id, now_ms, frame))
        if ch in self._subscribed:
            self.on_message(ch, log.last_id, frame)
        return log.last_id

    async def broadcast(self, ch: str, frame: bytes) -> None:
        if ch in self._subscribed:
            self.on_message(ch, 0, frame)

    async def subscribe(self, ch: str) -> None:
        self._subscribed.add(ch)

    async def unsubscribe(self, ch: str) -> None:
        self._subscribed.discard(ch)

    async def history(self, ch: str, since: int, now_ms: int) -> History:
        log = self._logs.get(ch)
        if log is None:
            return History(recovered=since == 0, last_id=0)
        if since > log.last_id:
            # The client saw offsets this log never issued (the server restarted).
            return History(recovered=False, last_id=log.last_id)
        oldest = now_ms - self.history_age_ms
        frames = [(i, f) for i, t, f in log.entries if i > since and t >= oldest]
        wanted = log.last_id - since
        missed = wanted - len(frames)
        return History(frames=frames, recovered=missed == 0, missed=missed, last_id=log.last_id)

    async def last_id(self, ch: str) -> int:
        log = self._logs.get(ch)
        return log.last_id if log is not None else 0

    async def presence_join(self, ch: str, user: str, conn: str, now_ms: int) -> bool:
        return self._presence.join(ch, user, conn, now_ms) is not None

    async def presence_leave(self, ch: str, user: str, conn: str) -> bool:
        return self._presence.leave(ch, user, conn) is not None

    async def presence_heartbeat(self, ch: str, user: str, conn: str, now_ms: int) -> bool:
        return self._presence.heartbeat(ch, user, conn, now_ms) is not None

    async def presence_sweep(self, now_ms: int, expiry_ms: int) -> list[Transition]:
        return self._presence.sweep(now_ms, expiry_ms)

    async def members(self, ch: str) -> list[str]:
        return self._presence.members(ch)

    async def control(self, event: dict[str, Any]) -> None:
        self.on_control(event)

    def presence_connections(self, ch: str) -> int:
        """Connections registered in ``ch`` (for tests and metrics)."""
        return self._presence.connections(ch)
