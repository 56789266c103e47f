"""Benchmark: how long `rtbench report` takes on a long run.

Writes a synthetic results folder the size of a one-hour run of three transports (3 × 3,600
per-second rows in series.csv, 3 × 3,600 histograms in latency.hlog, each from 5,000 latency
samples), then times `rtbench report` on it end to end, as a user would run it. The figures
in the folder are generated, not measured: only the report's running time is the result.

    python benchmarks/report_speed.py [--seconds 3600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from hdrh.histogram import HdrHistogram

from loadgen.results import SCHEMA_VERSION, SERIES_COLUMNS, environment

TRANSPORTS = ("ws", "sse", "sse-h2")
STEPS = (1000, 5000, 10000, 20000)
TEMPLATES = 64


def histograms(rng: np.random.Generator, median_us: float) -> list[tuple[str, float]]:
    out = []
    for _ in range(TEMPLATES):
        h = HdrHistogram(1, 3_600_000_000, 3)
        values, counts = np.unique(
            rng.lognormal(np.log(median_us), 0.6, 5000).astype(np.int64) + 1, return_counts=True
        )
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            h.record_value(value, count)
        out.append((h.encode().decode(), h.get_max_value() / 1000))
    return out


def write_run(root: Path, seconds: int) -> Path:
    rng = np.random.default_rng(1)
    run = root / "20261204-000000-hour"
    run.mkdir(parents=True)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "started": "2026-12-04T00:00:00+00:00",
        "scenario": {"name": "hour", "target": {"processes": 1}},
        "environment": environment(),
    }
    (run / "run.json").write_bytes(orjson.dumps(meta))
    summary: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "scenario": "hour",
        "partial": False,
        "transports": {},
    }
    per_step = seconds // len(STEPS)
    with (run / "series.csv").open("w", newline="") as s, (run / "latency.hlog").open("w") as log:
        series = csv.DictWriter(s, SERIES_COLUMNS)
        series.writeheader()
        log.write("#[Histogram log format version 1.3]\n")
        for n, transport in enumerate(TRANSPORTS):
            templates = histograms(rng, 3000 * (n + 1))
            steps = []
            for i in range(seconds):
                step = STEPS[min(i // per_step, len(STEPS) - 1)]
                t = i + 1.0
                payload, max_ms = templates[int(rng.integers(TEMPLATES))]
                log.write(f"Tag={transport},{t - 1:.3f},1.000,{max_ms:.3f},{payload}\n")
                series.writerow(
                    {
                        "t_s": t,
                        "transport": transport,
                        "repeat": 1,
                        "step": step,
                        "phase": "hold" if i % per_step > 30 else "ramp",
                        "connections": step,
                        "target": step,
                        "msgs_in_per_s": step,
                        "msgs_out_per_s": step // 100,
                        "p50_ms": 3.0 * (n + 1),
                        "p99_ms": 12.0 * (n + 1),
                        "server_rss": 60e6 + step * 25_000,
                        "server_uss": 55e6 + step * 24_000,
                        "server_cpu_pct": step / 250,
                        "kernel_bytes": step * 7000,
                        "gen_cpu_pct": 30.0,
                        "gen_loop_lag_p99_ms": 2.0,
                        "errors": 0,
                    }
                )
            merged = HdrHistogram(1, 3_600_000_000, 3)
            for payload, _ in templates:
                merged.add(HdrHistogram.decode(payload))
            for step in STEPS:
                steps.append(
                    {
                        "histogram": merged.encode().decode(),
                        "connections": step,
                        "target": step,
                        "samples": 5000 * per_step,
                        "latency_ms": {
                            "p50": 3.0 * (n + 1),
                            "p90": 8.0 * (n + 1),
                            "p99": 12.0 * (n + 1),
                            "p99.9": 30.0 * (n + 1),
                            "max": 60.0 * (n + 1),
                        },
                        "msgs_per_s": float(step),
                        "server_cpu_s_per_1000_msgs": 0.04,
                    }
                )
            points = [
                {
                    "connections": c,
                    "rss": 60e6 + c * 25_000,
                    "uss": 55e6 + c * 24_000,
                    "kernel": c * 7000.0,
                }
                for c in (0, *STEPS)
            ]
            fit = {"bytes_per_conn": 25_000, "r2": 1.0, "points": len(points)}
            summary["transports"][transport] = {  # type: ignore[index]
                "transport": transport,
                "steps": steps,
                "memory": {"points": points, "rss": fit, "uss": fit, "kernel": fit},
                "integrity": {
                    "expected": 1,
                    "delivered": 1,
                    "lost": 0,
                    "duplicated": 0,
                    "out_of_order": 0,
                    "balanced": True,
                },
                "generator": {
                    "cpu_pct_max": 30.0,
                    "loop_lag_p99_ms": 2.0,
                    "generator_bound": False,
                    "why": None,
                },
                "errors": {},
            }
    (run / "summary.json").write_bytes(orjson.dumps(summary))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--keep", type=Path, help="write the folder here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="rtbench-report-speed-"))
    try:
        run = write_run(root, args.seconds)
        hlog_mb = (run / "latency.hlog").stat().st_size / 1e6
        print(f"{run}: {args.seconds * len(TRANSPORTS):,} rows, latency.hlog {hlog_mb:.1f} MB")
        rtbench = Path(sys.executable).with_name("rtbench")
        started = time.perf_counter()
        subprocess.run([str(rtbench), "report", str(run)], check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - started
        print(f"rtbench report: {took:.2f} s wall (target: under 10 s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
