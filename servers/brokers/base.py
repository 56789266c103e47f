"""The broker interface: what a server instance needs from the world beyond its process.

A broker assigns each channel's message offsets, keeps a history window for resume,
fans messages out to every instance that has subscribers, holds presence, and carries
control events (balance changes, frames for a session on another node) to every
instance. Both backends pass the same test suite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servers.core.presence import Transition

#: Called for every frame on a channel this instance subscribed to: (channel, id, frame).
#: ``id`` is the channel offset for ``msg`` frames and 0 for frames outside the history.
OnMessage = Callable[[str, int, bytes], None]
OnControl = Callable[[dict[str, Any]], None]

_MSG_PREFIX = b'{"op":"msg","id":'


def frame_id(frame: bytes) -> int:
    """The offset of a ``msg`` frame built by :func:`servers.core.protocol.msg_frame`, else 0."""
    if not frame.startswith(_MSG_PREFIX):
        return 0
    start = len(_MSG_PREFIX)
    return int(frame[start : frame.index(b",", start)])


@dataclass(frozen=True, slots=True)
class History:
    """Messages after a client's last seen offset.

    ``recovered`` is False when some were lost to the history window (count or age):
    ``missed`` counts those the client will never get, so it is told, not skipped.
    """

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    recovered: bool = True
    missed: int = 0
    last_id: int = 0


class Broker(ABC):
    """One per server process."""

    def __init__(self, *, node: str, history_count: int, history_age_ms: int) -> None:
        self.node = node
        self.history_count = history_count
        self.history_age_ms = history_age_ms
        self.on_message: OnMessage = lambda ch, msg_id, frame: None
        self.on_control: OnControl = lambda event: None

    async def start(self, on_message: OnMessage, on_control: OnControl) -> None:
        self.on_message = on_message
        self.on_control = on_control

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections; the broker cannot be used afterwards."""

    @abstractmethod
    async def publish(self, ch: str, tail: bytes, now_ms: int) -> int:
        """Append to the channel's history, fan out to every instance; return the offset."""

    @abstractmethod
    async def broadcast(self, ch: str, frame: bytes) -> None:
        """Fan out a frame that is not part of the history (presence)."""

    @abstractmethod
    async def subscribe(self, ch: str) -> None:
        """Start receiving ``ch`` on this instance (called for the first local subscriber)."""

    @abstractmethod
    async def unsubscribe(self, ch: str) -> None:
        """Stop receiving ``ch`` (called when the last local subscriber leaves)."""

    @abstractmethod
    async def history(self, ch: str, since: int, now_ms: int) -> History:
        """What followed offset ``since`` and is still inside the window."""

    @abstractmethod
    async def last_id(self, ch: str) -> int:
        """The newest offset of ``ch`` (0 when nothing was published)."""

    @abstractmethod
    async def presence_join(self, ch: str, user: str, conn: str, now_ms: int) -> bool:
        """Register a connection; True when the user just came online in ``ch``."""

    @abstractmethod
    async def presence_leave(self, ch: str, user: str, conn: str) -> bool:
        """Remove a connection; True when the user just went offline in ``ch``."""

    @abstractmethod
    async def presence_heartbeat(self, ch: str, user: str, conn: str, now_ms: int) -> bool:
        """Refresh a connection; True when an expired user came back online."""

    @abstractmethod
    async def presence_sweep(self, now_ms: int, expiry_ms: int) -> list[Transition]:
        """Expire silent connections; each offline transition is returned to one instance only."""

    @abstractmethod
    async def members(self, ch: str) -> list[str]:
        """Users online in ``ch``."""

    @abstractmethod
    async def control(self, event: dict[str, Any]) -> None:
        """Deliver ``event`` to :attr:`on_control` of every instance, this one included."""
