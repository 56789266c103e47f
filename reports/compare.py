"""Compare two runs for CI: deltas per transport and step, the noise band from repeats,
and thresholds such as ``p99>+10%,ram_per_conn>+5%`` that fail the pipeline.

A threshold is crossed when the change goes past it in its direction *and* lies outside
the noise band (the spread of the base run's repeats), when the base run has repeats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reports.results import ReportError, RunData
from reports.tables import Table

StepGetter = Callable[[dict[str, Any]], float | None]
TransportGetter = Callable[[dict[str, Any]], float | None]


def _latency(key: str) -> StepGetter:
    return lambda step: (step.get("latency_ms") or {}).get(key)


def _ram(key: str) -> TransportGetter:
    return lambda figures: ((figures.get("memory") or {}).get(key) or {}).get("bytes_per_conn")


STEP_METRICS: dict[str, tuple[StepGetter, str]] = {
    "p50": (_latency("p50"), "ms"),
    "p90": (_latency("p90"), "ms"),
    "p99": (_latency("p99"), "ms"),
    "p99.9": (_latency("p99.9"), "ms"),
    "max": (_latency("max"), "ms"),
    "msgs_per_s": (lambda step: step.get("msgs_per_s"), "msg/s"),
    "cpu_per_1k": (lambda step: step.get("server_cpu_s_per_1000_msgs"), "CPU-s"),
}
TRANSPORT_METRICS: dict[str, tuple[TransportGetter, str]] = {
    "ram_per_conn": (_ram("rss"), "B"),
    "uss_per_conn": (_ram("uss"), "B"),
    "kernel_per_conn": (_ram("kernel"), "B"),
    "lost": (lambda figures: (figures.get("integrity") or {}).get("lost"), "msgs"),
    "duplicated": (lambda figures: (figures.get("integrity") or {}).get("duplicated"), "msgs"),
}
METRICS = (*STEP_METRICS, *TRANSPORT_METRICS)
_RULE = re.compile(
    r"^\s*(?P<metric>[a-z0-9_.]+)\s*(?P<op>[<>])\s*(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?P<unit>%?)\s*$"
)


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:+g}{'%' if self.relative else ''}"

    def crossed(self, base: float, new: float) -> bool:
        change = self.change(base, new)
        if change is None:
            return False
        return change > self.value if self.op == ">" else change < self.value

    def change(self, base: float, new: float) -> float | None:
        if not self.relative:
            return new - base
        if base == 0:
            return None if new == 0 else float("inf") if new > 0 else float("-inf")
        return (new - base) / abs(base) * 100


def parse_thresholds(text: str) -> list[Threshold]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RULE.match(part)
        if not match:
            raise ReportError(
                f"--fail-on {part!r}: write METRIC>+N% or METRIC<-N% (or an absolute N in the "
                f"metric's unit), for example p99>+10%; metrics: {', '.join(METRICS)}"
            )
        metric = match["metric"]
        if metric not in METRICS:
            raise ReportError(
                f"--fail-on {part!r}: unknown metric {metric!r}; allowed: {', '.join(METRICS)}"
            )
        out.append(Threshold(metric, match["op"], float(match["value"]), match["unit"] == "%"))
    return out


@dataclass
class Delta:
    transport: str
    connections: int | None
    metric: str
    unit: str
    base: float | None
    new: float | None
    noise: float | None
    """Half the spread of the base run's repeats, in the metric's unit; None without repeats."""
    crossed: list[Threshold]

    @property
    def change_pct(self) -> float | None:
        if self.base is None or self.new is None or self.base == 0:
            return None
        return (self.new - self.base) / abs(self.base) * 100

    @property
    def within_noise(self) -> bool:
        if self.noise is None or self.base is None or self.new is None:
            return False
        return abs(self.new - self.base) <= self.noise


def _half_spread(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return (max(kept) - min(kept)) / 2 if len(kept) >= 2 else None


def _step_by_target(steps: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(step.get("target") or step.get("connections") or 0): step for step in steps}


def compare(base: RunData, new: RunData, thresholds: list[Threshold]) -> list[Delta]:
    by_metric: dict[str, list[Threshold]] = {}
    for threshold in thresholds:
        by_metric.setdefault(threshold.metric, []).append(threshold)
    deltas: list[Delta] = []

    def add(
        transport: str,
        connections: int | None,
        metric: str,
        unit: str,
        b: float | None,
        n: float | None,
        noise: float | None,
    ) -> None:
        crossed = []
        if b is not None and n is not None:
            crossed = [t for t in by_metric.get(metric, []) if t.crossed(b, n)]
        delta = Delta(transport, connections, metric, unit, b, n, noise, crossed)
        if delta.within_noise:
            delta.crossed = []
        deltas.append(delta)

    for transport, base_result in base.transports.items():
        new_result = new.transports.get(transport)
        if new_result is None:
            continue
        repeats = base_result.get("repeats") or []
        base_steps = _step_by_target(base_result.get("steps", []))
        new_steps = _step_by_target(new_result.get("steps", []))
        for target in sorted(base_steps.keys() & new_steps.keys()):
            for metric, (get, unit) in STEP_METRICS.items():
                noise = _half_spread(
                    [
                        get(s)
                        for r in repeats
                        for s in r.get("steps", [])
                        if int(s.get("target") or 0) == target
                    ]
                )
                add(
                    transport,
                    target,
                    metric,
                    unit,
                    get(base_steps[target]),
                    get(new_steps[target]),
                    noise,
                )
        for metric, (get_t, unit) in TRANSPORT_METRICS.items():
            noise = _half_spread([get_t(r) for r in repeats])
            add(transport, None, metric, unit, get_t(base_result), get_t(new_result), noise)
    return deltas


def missing(base: RunData, new: RunData) -> list[str]:
    """What one run measured and the other did not, so a comparison is not silently narrow."""
    out = []
    for transport in base.transports.keys() - new.transports.keys():
        out.append(f"{transport} is in the base run only")
    for transport in new.transports.keys() - base.transports.keys():
        out.append(f"{transport} is in the new run only")
    for transport in base.transports.keys() & new.transports.keys():
        b = set(_step_by_target(base.transports[transport].get("steps", [])))
        n = set(_step_by_target(new.transports[transport].get("steps", [])))
        for step in sorted(b - n):
            out.append(f"{transport} at {step:,} connections is in the base run only")
        for step in sorted(n - b):
            out.append(f"{transport} at {step:,} connections is in the new run only")
    return out


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "CPU-s":
        return f"{value:,.4f}"
    return f"{value:,.0f} {unit}" if unit in ("B",) else f"{value:,.0f}"


def table(deltas: list[Delta], *, only_thresholds: bool = False) -> Table:
    out = Table(
        "Changes from base to new",
        ["Transport", "Connections", "Metric", "Base", "New", "Change", "Noise band", "Verdict"],
        note=(
            "Noise band: half the spread of the base run's repeats (set run.repeats in the "
            "scenario to measure it); a change inside it never fails."
        ),
    )
    for delta in deltas:
        if only_thresholds and not delta.crossed:
            continue
        pct = delta.change_pct
        change = "n/a" if pct is None else f"{pct:+.1f}%"
        noise = (
            "unknown (1 repeat)" if delta.noise is None else f"±{_value(delta.noise, delta.unit)}"
        )
        if delta.crossed:
            verdict = "FAIL " + ", ".join(str(t) for t in delta.crossed)
        elif delta.within_noise:
            verdict = "within noise"
        else:
            verdict = "ok"
        out.rows.append(
            [
                delta.transport,
                "all steps" if delta.connections is None else f"{delta.connections:,}",
                delta.metric,
                _value(delta.base, delta.unit),
                _value(delta.new, delta.unit),
                change,
                noise,
                verdict,
            ]
        )
    return out


def render_text(t: Table) -> str:
    widths = [max([len(h), *(len(r[i]) for r in t.rows)]) for i, h in enumerate(t.headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(t.headers, widths, strict=True))
    rows = [line, "-" * len(line)]
    rows += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in t.rows]
    return "\n".join(rows)
