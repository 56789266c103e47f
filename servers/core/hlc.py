"""Hybrid logical clocks.

Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent Snapshots in
Globally Distributed Databases" (2014). :func:`tick` and :func:`receive` are the
founding article's ``tick(local)`` and ``tick(local, received)``, with one addition:
a remote timestamp more than ``max_drift_ms`` ahead of the physical clock is
rejected (:class:`ClockDriftError`) instead of dragging every later timestamp along.

Timestamps order totally by ``(ms, counter, node)``; on the wire they are
``"<ms>:<counter>:<node>"``.
"""

from __future__ import annotations

from typing import NamedTuple

from servers.core.errors import ClockDriftError

DEFAULT_MAX_DRIFT_MS = 60_000


class HLC(NamedTuple):
    """One hybrid logical timestamp; tuple order is the total order."""

    ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.ms}:{self.counter}:{self.node}"

    @classmethod
    def parse(cls, text: str) -> HLC:
        """Parse ``"<ms>:<counter>:<node>"``; raises :class:`ValueError` when malformed."""
        ms, counter, node = text.split(":", 2)
        value = cls(int(ms), int(counter), node)
        if value.ms < 0 or value.counter < 0 or not node:
            raise ValueError(f"invalid hlc {text!r}")
        return value


def tick(local: HLC, now_ms: int) -> HLC:
    """Timestamp a local event (send or publish)."""
    ms = max(local.ms, now_ms)
    counter = local.counter + 1 if ms == local.ms else 0
    return HLC(ms, counter, local.node)


def receive(
    local: HLC, remote: HLC, now_ms: int, *, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS
) -> HLC:
    """Merge a received timestamp into the local clock.

    Raises :class:`ClockDriftError` when ``remote`` is more than ``max_drift_ms``
    ahead of ``now_ms``; the local clock is then left as it was.
    """
    if remote.ms - now_ms > max_drift_ms:
        raise ClockDriftError(
            f"remote clock {remote.ms - now_ms} ms ahead, more than {max_drift_ms} ms allowed"
        )
    ms = max(local.ms, remote.ms, now_ms)
    if ms == local.ms and ms == remote.ms:
        counter = max(local.counter, remote.counter) + 1
    elif ms == local.ms:
        counter = local.counter + 1
    elif ms == remote.ms:
        counter = remote.counter + 1
    else:
        counter = 0
    return HLC(ms, counter, local.node)


class Clock:
    """A mutable HLC for one node; the caller passes the physical time in."""

    __slots__ = ("max_drift_ms", "now", "rejected")

    def __init__(self, node: str, *, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS) -> None:
        self.now = HLC(0, 0, node)
        self.max_drift_ms = max_drift_ms
        self.rejected = 0

    def tick(self, now_ms: int) -> HLC:
        self.now = tick(self.now, now_ms)
        return self.now

    def receive(self, remote: HLC, now_ms: int) -> HLC:
        try:
            self.now = receive(self.now, remote, now_ms, max_drift_ms=self.max_drift_ms)
        except ClockDriftError:
            self.rejected += 1
            raise
        return self.now
