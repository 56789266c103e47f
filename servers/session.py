"""One client connection, whatever its transport: identity, memberships, send queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import Any

from servers.core.protocol import op_of, sse_event
from servers.core.ratelimit import TokenBucket

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SLOW_CONSUMER = 4008
"""Application close code: the send queue passed ``send_queue_limit``."""


class Transport(StrEnum):
    WS = "ws"
    SSE = "sse"
    SSE_H2 = "sse-h2"


class MemberState(Enum):
    PENDING = "pending"
    """Gating check or subscription under way; nothing is delivered yet."""
    REPLAYING = "replaying"
    """Subscribed; live frames are buffered while history is sent."""
    LIVE = "live"


class Membership:
    __slots__ = ("buffer", "last_id", "presence", "state")

    def __init__(self, last_id: int = 0) -> None:
        self.state = MemberState.PENDING
        self.buffer: list[tuple[int, bytes]] = []
        self.last_id = last_id
        self.presence = False


class Session:
    """Frames for the client go through :meth:`push` into a bounded queue that the
    transport drains; the queue bound keeps a slow consumer from growing memory."""

    __slots__ = (
        "active",
        "bucket",
        "channels",
        "close_code",
        "close_reason",
        "closed",
        "errors",
        "on_overflow",
        "pending",
        "queue",
        "queue_limit",
        "sid",
        "transport",
        "user",
        "wake",
    )

    def __init__(
        self,
        sid: str,
        user: str,
        transport: Transport,
        *,
        queue_limit: int,
        bucket: TokenBucket,
        on_overflow: Callable[[Session], None],
    ) -> None:
        self.sid = sid
        self.user = user
        self.transport = transport
        self.queue: deque[bytes] = deque()
        self.queue_limit = queue_limit
        self.wake = asyncio.Event()
        self.channels: dict[str, Membership] = {}
        self.pending: set[asyncio.Task[None]] = set()
        self.closed = False
        self.errors = 0
        self.bucket = bucket
        self.on_overflow = on_overflow
        self.close_code = CLOSE_GOING_AWAY
        self.close_reason = ""
        self.active = False
        """A frame was queued since the last keep-alive tick (so none is needed)."""

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.queue_limit:
            self.on_overflow(self)
            return
        self.queue.append(frame)
        self.active = True
        self.wake.set()

    def deliver(self, ch: str, msg_id: int, frame: bytes) -> None:
        """A frame from the broker for channel ``ch``: buffer, drop a duplicate, or push."""
        member = self.channels.get(ch)
        if member is None or member.state is MemberState.PENDING:
            return
        if member.state is MemberState.REPLAYING:
            member.buffer.append((msg_id, frame))
            return
        if not msg_id:
            self.push(frame)
        elif msg_id > member.last_id:
            self.push_msg(member, msg_id, frame)

    def push_msg(self, member: Membership, msg_id: int, frame: bytes) -> None:
        """Queue a ``msg`` frame at offset ``msg_id`` of ``member``'s channel."""
        member.last_id = msg_id
        self.push(frame)

    def end(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Ask the transport to close: after the queued frames, or at once (``flush=False``).

        A WebSocket is closed with ``code``; an SSE stream gets an ``error`` event first
        unless the code is 1001 (going away), after which the client reconnects.
        """
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        if not flush:
            self.queue.clear()
        self.wake.set()

    def push_raw(self, data: bytes) -> None:
        """Queue bytes as they are, past the bound (close notices, keep-alives)."""
        self.queue.append(data)
        self.wake.set()

    async def frames(self) -> deque[bytes]:
        """Wait until frames are queued (or the session closed) and take them all."""
        while not self.queue and not self.closed:
            self.wake.clear()
            await self.wake.wait()
        taken, self.queue = self.queue, deque()
        return taken


class SseSession(Session):
    """A session whose frames are SSE events (WHATWG HTML, 9.2.5 "Parsing an event stream").

    The event ``id`` of a ``msg`` is the position in every channel of the stream, in the
    order of the ``ch`` parameter (``"17"`` for one channel, ``"17,4"`` for two), so that
    ``Last-Event-ID`` resumes each channel where the client left it.
    """

    __slots__ = ("order",)

    def __init__(self, *args: Any, order: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order = order

    def push(self, frame: bytes) -> None:
        super().push(sse_event(op_of(frame), frame))

    def push_msg(self, member: Membership, msg_id: int, frame: bytes) -> None:
        member.last_id = msg_id
        if len(self.order) == 1:
            event_id = str(msg_id)
        else:
            channels = self.channels
            event_id = ",".join(
                str(m.last_id) if (m := channels.get(ch)) is not None else "0" for ch in self.order
            )
        Session.push(self, sse_event("msg", frame, event_id))
