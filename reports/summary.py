"""The headline table of one run, read from its ``summary.json`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.results import ReportError, load_summary

__all__ = ["ReportError", "load_summary", "render_summary"]


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def render_summary(run_dir: Path) -> str:
    data = load_summary(run_dir)
    lines = [f"rtbench: {data.get('scenario')}  ({run_dir})"]
    if data.get("partial"):
        lines.append(f"PARTIAL RESULTS: {data.get('stopped', 'the run did not finish')}")
    header = (
        f"{'transport':<8} {'conns':>7} {'p50':>9} {'p90':>9} {'p99':>9} {'p99.9':>9} "
        f"{'msgs/s':>9} {'CPU-s/1k':>9} {'gen/1k':>8}"
    )
    lines += ["", header, "-" * len(header)]
    notes = []
    for name, result in data.get("transports", {}).items():
        for step in result.get("steps", []):
            lat = step["latency_ms"]
            lines.append(
                f"{name:<8} {step['connections']:>7,} {_fmt(lat['p50'], 'ms'):>9} "
                f"{_fmt(lat['p90'], 'ms'):>9} {_fmt(lat['p99'], 'ms'):>9} "
                f"{_fmt(lat['p99.9'], 'ms'):>9} {step['msgs_per_s']:>9,.0f} "
                f"{_fmt(step.get('server_cpu_s_per_1000_msgs'), '', 3):>9} "
                f"{_fmt(step.get('gen_cpu_s_per_1000_msgs'), '', 3):>8}"
            )
        memory = result.get("memory", {})
        integrity = result.get("integrity")
        generator = result.get("generator", {})
        mem = ", ".join(
            f"{key} {_fmt(memory.get(key, {}).get('bytes_per_conn'), ' B')}"
            f" (R² {_fmt(memory.get(key, {}).get('r2'), '', 3)})"
            for key in ("rss", "uss", "kernel")
        )
        points = (memory.get("rss") or {}).get("points", 0)
        if 0 < points < 3:
            mem += f"  [{points} points only: add steps for a meaningful slope and R²]"
        notes.append(f"{name}: RAM per connection: {mem}")
        connect = result.get("connect_ms") or {}
        phases = [
            f"{phase} {_fmt(v.get('p50'), 'ms')}/{_fmt(v.get('p99'), 'ms')}"
            for phase, v in connect.items()
            if v.get("p50") is not None
        ]
        if phases:
            notes.append(f"{name}: connect p50/p99: " + ", ".join(phases))
        gen = memory.get("generator_rss") or {}
        if gen.get("bytes_per_conn") is not None:
            notes.append(
                f"{name}: generator RAM per connection: {_fmt(gen['bytes_per_conn'], ' B')} "
                f"(R² {_fmt(gen.get('r2'), '', 3)}, all workers)"
            )
        if integrity:
            notes.append(
                f"{name}: integrity: expected {integrity['expected']:,} = delivered "
                f"{integrity['delivered']:,} + lost {integrity['lost']:,}; duplicated "
                f"{integrity['duplicated']}, out of order {integrity['out_of_order']}"
                + ("" if integrity["balanced"] else "  (DOES NOT BALANCE)")
            )
        if generator.get("generator_bound"):
            notes.append(
                f"{name}: generator_bound: true ({generator['why']}): latency and "
                "throughput here describe the generator, not the server"
            )
        if result.get("errors"):
            notes.append(f"{name}: errors: {result['errors']}")
    return "\n".join([*lines, "", *notes])
