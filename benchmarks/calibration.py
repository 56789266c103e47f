"""Benchmark: open loop (rtbench) against closed loop, on a server that stalls on schedule.

Starts `python -m loadgen.calibration` (1 ms of work per message, a 250 ms freeze every
2.5 s), then measures it twice for the same 10 s at 400 messages/s on one connection:

- rtbench's ws-echo workload (open loop: latency from the intended send time);
- a closed-loop client, the way most load tools measure: send, wait for the reply, record
  reply - actual send, then send the next one at the next tick still ahead (ticks missed
  while waiting are skipped, so the stall is sampled once).

Both are printed beside the latencies the schedule implies.

    python benchmarks/calibration.py
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from loadgen.calibration import Stalls, percentile
from loadgen.engine import main_run
from loadgen.scenario import load_scenario

RATE, HOLD = 400, 10
STALLS = Stalls(1.0, 250.0, 2500.0)
PERCENTILES = ("50", "90", "99", "99.9")


async def closed_loop(url: str, seconds: float) -> list[float]:
    period = 1 / RATE
    out = []
    async with connect(url, compression=None) as ws:
        end = time.monotonic() + seconds
        tick = time.monotonic()
        while time.monotonic() < end:
            sent = time.monotonic()
            await ws.send(orjson.dumps({"t": 0}).decode())
            await ws.recv()
            out.append((time.monotonic() - sent) * 1000)
            now = time.monotonic()
            while tick <= now:
                tick += period
            await asyncio.sleep(tick - now)
    return out


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "loadgen.calibration", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        url = f"ws://127.0.0.1:{port}/"
        with tempfile.TemporaryDirectory() as tmp:
            scenario = Path(tmp) / "calibration.toml"
            scenario.write_text(
                f'name = "calibration"\n[target]\nlaunch = false\nurl = "{url}"\n'
                f'[run]\ntransports = ["ws"]\nsteps = [1]\nhold_s = {HOLD}\nwarmup_s = 1\n'
                f'[workload]\nkind = "ws-echo"\nrate = {RATE}\npayload_bytes = 16\n'
            )
            run_dir = main_run(load_scenario(scenario), Path(tmp) / "results", say=lambda _: None)
            summary = orjson.loads((run_dir / "summary.json").read_bytes())
        step = summary["transports"]["ws"]["steps"][0]
        closed = asyncio.run(closed_loop(url, HOLD))
    finally:
        server.terminate()
        server.wait(timeout=10)
    expected = STALLS.expected_latencies(RATE, 100 * STALLS.every_ms / 1000)
    print(f"{'':<28}" + "".join(f"{'p' + p:>10}" for p in PERCENTILES) + f"{'samples':>10}")
    print(
        f"{'analytic (the schedule)':<28}"
        + "".join(f"{percentile(expected, float(p)):>8.1f}ms" for p in PERCENTILES)
        + f"{len(expected) * HOLD * 1000 // (100 * int(STALLS.every_ms)):>10}"
    )
    print(
        f"{'rtbench (open loop)':<28}"
        + "".join(f"{step['latency_ms']['p' + p]:>8.1f}ms" for p in PERCENTILES)
        + f"{step['samples']:>10}"
    )
    print(
        f"{'closed loop':<28}"
        + "".join(f"{percentile(closed, float(p)):>8.1f}ms" for p in PERCENTILES)
        + f"{len(closed):>10}"
    )


if __name__ == "__main__":
    main()
