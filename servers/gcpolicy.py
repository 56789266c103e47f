"""The garbage-collector policy of a server that holds thousands of long-lived connections.

CPython's cyclic collector walks every tracked object of a generation. Each connection owns
hundreds of them (protocol, transport, h2 state machine, session, queue, tasks), so at 5,000
connections a full (generation 2) pass took 0.4-1.4 s in the SSE/2 server on this machine,
every few seconds, stalling every stream at once: a server-side pause that showed up as
a one-second p99. The policy, the one large Python services use (``gc.freeze``): every few
seconds, move everything that has survived so far into the permanent generation, which the
collector never walks; only objects made since are collected. Connections that close leave
their cycles frozen, so when the open connections fall below half of their peak the frozen
objects are released and collected once (one pause, at a moment of low load).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable


async def freeze_survivors(every_s: float, open_connections: Callable[[], int]) -> None:
    peak = 0
    while True:
        await asyncio.sleep(every_s)
        now = open_connections()
        if peak and now < peak // 2:
            gc.unfreeze()
            gc.collect()
            peak = now
        gc.freeze()
        peak = max(peak, now)
