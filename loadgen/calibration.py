"""A calibration target: a WebSocket echo server that stalls on a known schedule, and the
exact latencies an open-loop generator must report against it.

The server (python-websockets, one process) answers each text frame after ``service_ms``
of busy work, in arrival order, and freezes the whole process for ``pause_ms`` at the start
of every ``every_ms`` window. Because the schedule is known, the latency of every message
of an open-loop sender is known too (:func:`expected_latencies`), so a generator's
percentiles can be checked against arithmetic instead of against another tool.

    python -m loadgen.calibration --port 9000 --service-ms 1 --pause-ms 250 --every-ms 2500
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Stalls:
    service_ms: float = 1.0
    pause_ms: float = 250.0
    every_ms: float = 2500.0

    def expected_latencies(self, rate: float, seconds: float, phase_ms: float = 0.0) -> list[float]:
        """Latency (ms) of each message of one open-loop sender at ``rate``/s for
        ``seconds``, first send ``phase_ms`` after a pause began: a FIFO server that serves
        in ``service_ms`` and does nothing during pauses."""
        period = 1000.0 / rate
        free_at = 0.0
        out = []
        for k in range(int(seconds * rate)):
            sent = phase_ms + k * period
            start = max(sent, free_at)
            # Starting inside a pause waits for its end.
            window = math.floor(start / self.every_ms) * self.every_ms
            if start < window + self.pause_ms:
                start = window + self.pause_ms
            free_at = start + self.service_ms
            out.append(free_at - sent)
        return out


def percentile(values: list[float], p: float) -> float:
    """The smallest value with at least p % of the values at or below it (HdrHistogram's
    definition)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


async def serve(host: str, port: int, stalls: Stalls, started: float) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    service_s = stalls.service_ms / 1000
    pause_s, every_s = stalls.pause_ms / 1000, stalls.every_ms / 1000

    def work() -> None:
        now = time.monotonic()
        into = (now - started) % every_s
        if into < pause_s:
            time.sleep(pause_s - into)  # the whole process stalls, as a GC pause would
        busy_until = time.perf_counter() + service_s
        while time.perf_counter() < busy_until:
            pass

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            work()
            await connection.send(message)

    async with ws_serve(echo, host, port, compression=None, max_size=2**20):
        print(f"ready ws://{host}:{port}/", flush=True)
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description="WebSocket echo server that stalls on schedule")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service-ms", type=float, default=1.0)
    parser.add_argument("--pause-ms", type=float, default=250.0)
    parser.add_argument("--every-ms", type=float, default=2500.0)
    args = parser.parse_args()
    stalls = Stalls(args.service_ms, args.pause_ms, args.every_ms)
    asyncio.run(serve(args.host, args.port, stalls, time.monotonic()))


if __name__ == "__main__":
    main()
