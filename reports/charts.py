"""The report's charts (matplotlib, no pyplot state): each function returns a titled
figure with units and a legend, or None when the runs hold nothing to draw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure

from loadgen.stats import values_at_percentiles
from reports.results import RunData

COLORS = {"ws": "#1f77b4", "sse": "#ff7f0e", "sse-h2": "#2ca02c"}
FALLBACK = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
SPECTRUM_NINES = np.arange(0.0, 5.01, 0.05)
"""x = number of nines: 0 -> p0, 1 -> p90, 2 -> p99, 3 -> p99.9 ..."""


@dataclass
class Chart:
    name: str
    title: str
    png: bytes


def _color(label: str, index: int) -> str:
    return COLORS.get(label, FALLBACK[index % len(FALLBACK)])


def _label(run: RunData, transport: str, many: bool) -> str:
    return f"{transport} ({run.name})" if many else transport


def _png(figure: Figure) -> bytes:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def latency_vs_connections(runs: list[RunData]) -> Figure | None:
    figure = Figure(figsize=(8, 4.5))
    ax = figure.add_subplot()
    many, drawn = len(runs) > 1, False
    for i, (run, name, result) in enumerate(_each(runs)):
        steps = [s for s in result.get("steps", []) if s.get("latency_ms", {}).get("p50")]
        if not steps:
            continue
        x = [s["connections"] for s in steps]
        color = _color(name, i)
        label = _label(run, name, many)
        for key, style in (("p50", "-"), ("p99", "--"), ("p99.9", ":")):
            y = [s["latency_ms"].get(key) for s in steps]
            ax.plot(x, y, style, marker="o", color=color, label=f"{label} {key}")
        drawn = True
    if not drawn:
        return None
    ax.set_yscale("log")
    ax.set_xlabel("open connections")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Latency percentiles against connections")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return figure


def spectrum(runs: list[RunData]) -> Figure | None:
    """HDR percentile spectrum of each transport's largest measured step."""
    figure = Figure(figsize=(8, 4.5))
    ax = figure.add_subplot()
    many, drawn = len(runs) > 1, False
    percentiles = 100.0 * (1.0 - 10.0**-SPECTRUM_NINES)
    for i, (run, name, result) in enumerate(_each(runs)):
        held = step_histograms(result) or {
            step: h for (t, step), h in run.hold_histograms().items() if t == name
        }
        if not held:
            continue
        step = max(held)
        histogram = held[step]
        if histogram.get_total_count() == 0:
            continue
        values = [v / 1000 for v in values_at_percentiles(histogram, percentiles)]
        label = (
            f"{_label(run, name, many)} at {step:,} conns ({histogram.get_total_count():,} samples)"
        )
        ax.plot(SPECTRUM_NINES, values, color=_color(name, i), label=label)
        drawn = True
    if not drawn:
        return None
    ticks = [0, 1, 2, 3, 4, 5]
    ax.set_xticks(ticks, ["p0", "p90", "p99", "p99.9", "p99.99", "p99.999"])
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Latency percentile spectrum (HDR), largest step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return figure


def step_histograms(result: dict[str, Any]) -> dict[int, HdrHistogram]:
    """The merged histogram of each step, as the run stored it in summary.json."""
    out = {}
    for step in result.get("steps", []):
        if step.get("histogram"):
            out[int(step["target"])] = HdrHistogram.decode(step["histogram"])
    return out


def memory(runs: list[RunData]) -> Figure | None:
    figure = Figure(figsize=(8, 4.5))
    ax = figure.add_subplot()
    many, drawn = len(runs) > 1, False
    for i, (run, name, result) in enumerate(_each(runs)):
        points = [p for p in result.get("memory", {}).get("points", []) if p.get("rss") is not None]
        if len(points) < 2:
            continue
        x = np.array([p["connections"] for p in points], dtype=float)
        y = np.array([p["rss"] for p in points], dtype=float) / 2**20
        color = _color(name, i)
        label = _label(run, name, many)
        ax.plot(x, y, "o", color=color)
        slope, intercept = np.polyfit(x, y, 1)
        fit = result["memory"].get("rss", {})
        xs = np.array([0.0, x.max()])
        ax.plot(
            xs,
            slope * xs + intercept,
            "-",
            color=color,
            label=f"{label}: {slope * 2**20:,.0f} B/conn RSS (R² {fit.get('r2', float('nan')):.3f})",
        )
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("open connections")
    ax.set_ylabel("server RSS (MiB, all server processes)")
    ax.set_title("Server memory against connections, least-squares fit")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return figure


def throughput_vs_instances(runs: list[RunData]) -> Figure | None:
    if len({run.instances for run in runs}) < 2:
        return None
    figure = Figure(figsize=(8, 4.5))
    ax = figure.add_subplot()
    best: dict[str, dict[int, float]] = {}
    for run, name, result in _each(runs):
        for step in result.get("steps", []):
            rate = step.get("msgs_per_s") or 0.0
            per = best.setdefault(name, {})
            per[run.instances] = max(per.get(run.instances, 0.0), rate)
    for i, (name, points) in enumerate(sorted(best.items())):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", color=_color(name, i), label=name)
    ax.set_xlabel("server instances")
    ax.set_ylabel("messages delivered per second (best step)")
    ax.set_title("Throughput against server instances")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return figure


TIMELINE = (
    ("connections", "open connections"),
    ("msgs_in_per_s", "msgs/s delivered"),
    ("p99_ms", "p99 (ms)"),
    ("server_cpu_pct", "server CPU (%)"),
    ("gen_loop_lag_p99_ms", "generator loop lag p99 (ms)"),
)


def timeline(run: RunData) -> Figure | None:
    series = run.series
    if series.empty:
        return None
    figure = Figure(figsize=(9, 11))
    axes = figure.subplots(len(TIMELINE), 1, sharex=True)
    for i, (name, rows) in enumerate(series.groupby("transport", sort=False)):
        color = _color(str(name), i)
        t = rows["t_s"].to_numpy()
        for ax, (column, _) in zip(axes, TIMELINE, strict=True):
            ax.plot(t, rows[column].to_numpy(dtype=float), color=color, lw=1, label=str(name))
        steps = rows["step"].to_numpy()
        changes = np.flatnonzero(np.diff(steps)) + 1
        for index in changes:
            for ax in axes:
                ax.axvline(t[index], color=color, alpha=0.35, ls=":")
    for ax, (_column, label) in zip(axes, TIMELINE, strict=True):
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("seconds since the transport's run started (dotted: step boundaries)")
    figure.suptitle(f"Timeline of {run.name}")
    return figure


def _each(runs: list[RunData]) -> list[tuple[RunData, str, dict[str, Any]]]:
    return [(run, name, result) for run in runs for name, result in run.transports.items()]


def render_all(runs: list[RunData]) -> list[Chart]:
    makers: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("latency", "Latency against connections", lambda: latency_vs_connections(runs)),
        ("spectrum", "HDR percentile spectrum", lambda: spectrum(runs)),
        ("memory", "Memory against connections", lambda: memory(runs)),
        ("instances", "Throughput against instances", lambda: throughput_vs_instances(runs)),
    ]
    for i, run in enumerate(runs):
        name = f"timeline-{i + 1}" if len(runs) > 1 else "timeline"
        makers.append((name, f"Timeline: {run.name}", partial(timeline, run)))
    charts = []
    for name, title, make in makers:
        figure = make()
        if figure is not None:
            charts.append(Chart(name, title, _png(figure)))
    return charts
