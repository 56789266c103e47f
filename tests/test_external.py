"""The generator against servers that are not ours: a stalling calibration echo server (the
reported percentiles must match the arithmetic), a plain websockets echo server, and a plain
SSE server, each a real process on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from loadgen.calibration import Stalls, percentile
from loadgen.engine import main_run
from loadgen.scenario import load_scenario

pytestmark = pytest.mark.timeout(120)

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(connection):
    async for message in connection:
        await connection.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.Future()

asyncio.run(main())
"""

SSE_SERVER = """
import asyncio, json, sys, time
from aiohttp import web

async def stream(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for n in range(10_000):
        data = json.dumps({"sent_ms": time.time_ns() / 1e6, "n": n})
        await response.write(f"id: {n}\\ndata: {data}\\n\\n".encode())
        await asyncio.sleep(0.02)
    return response

app = web.Application()
app.router.add_get("/events", stream)
print("ready", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def process(*args: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(tmp_path: Path, toml: str) -> dict[str, object]:
    path = tmp_path / "scenario.toml"
    path.write_text(toml)
    run_dir = main_run(load_scenario(path), tmp_path / "results", say=lambda line: None)
    summary: dict[str, object] = orjson.loads((run_dir / "summary.json").read_bytes())
    return summary


def test_percentiles_match_a_server_that_stalls_on_schedule(tmp_path: Path) -> None:
    """1 ms of work per message and a 250 ms freeze every 2.5 s, one connection sending 400
    echoes/s open-loop for 10 s (four stall cycles): p99 and p99.9 within 10 % of the
    latencies the schedule implies."""
    stalls, rate, hold = Stalls(1.0, 250.0, 2500.0), 400, 10
    port = free_port()
    with process("-m", "loadgen.calibration", "--port", str(port)):
        summary = run(
            tmp_path,
            f'name = "calibration"\n[target]\nlaunch = false\nurl = "ws://127.0.0.1:{port}/"\n'
            f'[run]\ntransports = ["ws"]\nsteps = [1]\nhold_s = {hold}\nwarmup_s = 1\n'
            f'[workload]\nkind = "ws-echo"\nrate = {rate}\npayload_bytes = 16\n',
        )
    step = summary["transports"]["ws"]["steps"][0]  # type: ignore[index]
    expected = stalls.expected_latencies(rate, 100 * stalls.every_ms / 1000)
    for p in ("99", "99.9"):
        want = percentile(expected, float(p))
        got = step["latency_ms"][f"p{p}"]
        assert abs(got - want) <= 0.10 * want, f"p{p}: reported {got} ms, analytic {want} ms"
    # Most messages meet an idle server: the median is the service time plus the loopback.
    assert step["latency_ms"]["p50"] < 10
    integrity = summary["transports"]["ws"]["integrity"]  # type: ignore[index]
    assert integrity["lost"] == 0 and integrity["expected"] > rate * hold


def test_generic_ws_echo_against_a_plain_websockets_server(tmp_path: Path) -> None:
    port = free_port()
    with process("-c", ECHO_SERVER, str(port)) as pid:
        summary = run(
            tmp_path,
            f'name = "plain-echo"\n[target]\nlaunch = false\nurl = "ws://127.0.0.1:{port}/"\n'
            f'probe = "{pid}"\n'
            '[run]\ntransports = ["ws"]\nsteps = [5, 20]\nhold_s = 2\nwarmup_s = 0\n'
            '[workload]\nkind = "ws-echo"\nrate = 20\n',
        )
    result = summary["transports"]["ws"]  # type: ignore[index]
    assert [s["connections"] for s in result["steps"]] == [5, 20]
    assert result["steps"][1]["msgs_per_s"] == pytest.approx(400, rel=0.1)
    assert result["steps"][1]["latency_ms"]["p99"] is not None
    assert result["integrity"]["lost"] == 0 and result["integrity"]["balanced"]
    # Not our server, but probed by PID: memory is measured at the baseline and both steps.
    assert result["memory"]["rss"]["points"] == 3
    assert result["memory"]["rss"]["bytes_per_conn"] is not None
    assert result["server_pids"] == [pid]
    assert not result["errors"]


def test_generic_sse_against_a_plain_sse_server(tmp_path: Path) -> None:
    port = free_port()
    with process("-c", SSE_SERVER, str(port)):
        summary = run(
            tmp_path,
            f'name = "plain-sse"\n[target]\nlaunch = false\n'
            f'url = "http://127.0.0.1:{port}/events"\n'
            '[run]\ntransports = ["sse"]\nsteps = [10]\nhold_s = 2\nwarmup_s = 0\n'
            '[workload]\nkind = "sse-plain"\ntime_field = "sent_ms"\n',
        )
    step = summary["transports"]["sse"]["steps"][0]  # type: ignore[index]
    # Ten streams, one event every 20 ms each.
    assert step["msgs_per_s"] == pytest.approx(500, rel=0.2)
    assert 0 < step["latency_ms"]["p50"] < 50
