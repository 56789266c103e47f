"""The report's tables and warnings, as plain data that the HTML and Markdown both render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reports.results import RunData

LOW_R2 = 0.95
MIN_SAMPLES_P99 = 1_000
MIN_SAMPLES_P999 = 10_000


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def fmt_ms(value: Any) -> str:
    return "not measured" if value is None else f"{value:,.2f} ms"


def fmt_bytes(value: Any) -> str:
    if value is None:
        return "not measured"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def fmt_num(value: Any, digits: int = 0) -> str:
    return "not measured" if value is None else f"{value:,.{digits}f}"


def _fit(result: dict[str, Any], key: str) -> dict[str, Any]:
    fit: dict[str, Any] = result.get("memory", {}).get(key) or {}
    return fit


def headline(runs: list[RunData]) -> Table:
    """Transport × connections, in the shape of the founding article's first table."""
    many = len(runs) > 1
    table = Table(
        "Transport comparison",
        [
            *(["Run"] if many else []),
            "Transport",
            "Connections",
            "p50",
            "p99",
            "RAM/conn user (RSS)",
            "RAM/conn kernel",
            "Messages/s",
            "Server CPU-s / 1k msgs",
        ],
        note=(
            "Latency from the intended send time (open loop), merged HDR histograms of the "
            "measured seconds. RAM per connection is the least-squares slope over every "
            "connection step of the transport (one figure per transport); kernel memory is "
            "host-wide, both ends of each loopback connection."
        ),
    )
    for run in runs:
        for name, result in run.transports.items():
            rss, kernel = _fit(result, "rss"), _fit(result, "kernel")
            for step in result.get("steps", []):
                lat = step.get("latency_ms", {})
                table.rows.append(
                    [
                        *([run.name] if many else []),
                        name,
                        fmt_num(step.get("connections")),
                        fmt_ms(lat.get("p50")),
                        fmt_ms(lat.get("p99")),
                        fmt_bytes(rss.get("bytes_per_conn")),
                        fmt_bytes(kernel.get("bytes_per_conn")),
                        fmt_num(step.get("msgs_per_s")),
                        fmt_num(step.get("server_cpu_s_per_1000_msgs"), 3),
                    ]
                )
    return table


def percentiles(runs: list[RunData]) -> Table:
    many = len(runs) > 1
    table = Table(
        "Latency percentiles",
        [
            *(["Run"] if many else []),
            "Transport",
            "Connections",
            "Samples",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ],
    )
    for run in runs:
        for name, result in run.transports.items():
            for step in result.get("steps", []):
                lat = step.get("latency_ms", {})
                table.rows.append(
                    [
                        *([run.name] if many else []),
                        name,
                        fmt_num(step.get("connections")),
                        fmt_num(step.get("samples")),
                        *(fmt_ms(lat.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max")),
                    ]
                )
    return table


def scaling(runs: list[RunData]) -> Table | None:
    """Instances × connections → throughput, the article's second table; needs runs with
    different server instance counts."""
    if len({run.instances for run in runs}) < 2:
        return None
    table = Table(
        "Throughput against server instances",
        ["Transport", "Instances", "Connections", "Messages/s", "p50", "p99"],
    )
    rows = []
    for run in runs:
        for name, result in run.transports.items():
            for step in result.get("steps", []):
                lat = step.get("latency_ms", {})
                rows.append(
                    (
                        name,
                        run.instances,
                        step.get("connections") or 0,
                        [
                            name,
                            str(run.instances),
                            fmt_num(step.get("connections")),
                            fmt_num(step.get("msgs_per_s")),
                            fmt_ms(lat.get("p50")),
                            fmt_ms(lat.get("p99")),
                        ],
                    )
                )
    table.rows = [r[3] for r in sorted(rows, key=lambda r: (r[0], r[1], r[2]))]
    return table


def storms(runs: list[RunData]) -> Table | None:
    """Reconnect storms: how many were cut, how many came back and how fast."""
    many = len(runs) > 1
    table = Table(
        "Reconnect storms",
        [
            *(["Run"] if many else []),
            "Transport",
            "Connections",
            "Dropped",
            "Resumed",
            "Failed",
            "Resume p50",
            "Resume p99",
            "Resume max",
        ],
        note="Time from the cut (no closing handshake) to the join acknowledgement of the "
        "resumed connection, token call included. Lost and duplicated messages across the gap "
        "are in the integrity table.",
    )
    for run in runs:
        for name, result in run.transports.items():
            for step in result.get("steps", []):
                storm = step.get("storm")
                if not storm:
                    continue
                resume = storm.get("resume_ms") or {}
                failed = ", ".join(f"{k} {v}" for k, v in sorted(storm["failed"].items()))
                table.rows.append(
                    [
                        *([run.name] if many else []),
                        name,
                        fmt_num(step.get("connections")),
                        fmt_num(storm.get("dropped")),
                        fmt_num(storm.get("resumed")),
                        failed or "0",
                        fmt_ms(resume.get("p50")),
                        fmt_ms(resume.get("p99")),
                        fmt_ms(resume.get("max")),
                    ]
                )
    return table if table.rows else None


def health(runs: list[RunData]) -> Table:
    many = len(runs) > 1
    table = Table(
        "Integrity and generator health",
        [
            *(["Run"] if many else []),
            "Transport",
            "Expected",
            "Delivered",
            "Lost",
            "Duplicated",
            "Out of order",
            "Balances",
            "Gen CPU max",
            "Gen loop lag p99 (hold)",
            "Generator bound",
            "Errors",
        ],
        note="expected = delivered + lost; duplicates and reordering are flagged on top.",
    )
    for run in runs:
        for name, result in run.transports.items():
            integrity = result.get("integrity") or {}
            gen = result.get("generator") or {}
            errors = result.get("errors") or {}
            table.rows.append(
                [
                    *([run.name] if many else []),
                    name,
                    *(
                        fmt_num(integrity.get(k))
                        for k in ("expected", "delivered", "lost", "duplicated", "out_of_order")
                    ),
                    "yes" if integrity.get("balanced") else "NO" if integrity else "not measured",
                    "not measured"
                    if gen.get("cpu_pct_max") is None
                    else f"{gen['cpu_pct_max']:.0f}%",
                    fmt_ms(gen.get("loop_lag_p99_ms")),
                    ("yes: " + str(gen.get("why"))) if gen.get("generator_bound") else "no",
                    ", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "none",
                ]
            )
    return table


ENVIRONMENT_KEYS = ("host", "cpu", "cores", "memory_bytes", "kernel", "python", "commit")


def environment(runs: list[RunData]) -> Table:
    table = Table("Environment", ["Run", "Field", "Value"])
    for run in runs:
        env = run.environment
        for key in ENVIRONMENT_KEYS:
            value = env.get(key)
            if key == "memory_bytes" and value:
                value = f"{value / 2**30:.1f} GiB"
            table.rows.append([run.name, key, "unknown" if value is None else str(value)])
        limits = env.get("open_files") or {}
        table.rows.append(
            [run.name, "open files", f"soft {limits.get('soft')}, hard {limits.get('hard')}"]
        )
        ports = env.get("ephemeral_ports") or []
        table.rows.append([run.name, "ephemeral ports", "-".join(map(str, ports)) or "unknown"])
        versions = env.get("versions") or {}
        table.rows.append(
            [run.name, "versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)]
        )
        table.rows.append([run.name, "started", str(run.meta.get("started", "unknown"))])
    return table


def warnings(runs: list[RunData]) -> list[str]:
    """Plain-words reasons not to trust a figure, one sentence each."""
    out: list[str] = []
    machines = {
        (r.environment.get("host"), r.environment.get("cpu"), r.environment.get("cores"))
        for r in runs
    }
    if len(machines) > 1:
        names = ", ".join(sorted(f"{h} ({c} cores)" for h, _, c in machines))
        out.append(
            f"These runs come from different machines ({names}): differences between them "
            "may be the hardware, not the transport."
        )
    for run in runs:
        prefix = f"{run.name}: " if len(runs) > 1 else ""
        if run.summary.get("partial"):
            out.append(
                f"{prefix}the run did not finish ({run.summary.get('stopped', 'no reason recorded')}); "
                "only the steps shown were measured."
            )
        for name, result in run.transports.items():
            gen = result.get("generator") or {}
            if gen.get("generator_bound"):
                out.append(
                    f"{prefix}{name}: the load generator was saturated ({gen.get('why')}); its "
                    "latency and throughput describe the generator, not the server."
                )
            for key, label in (("rss", "user-space"), ("kernel", "kernel")):
                fit = _fit(result, key)
                if fit.get("bytes_per_conn") is None:
                    out.append(
                        f"{prefix}{name}: {label} RAM per connection was not measured "
                        f"({fit.get('why', 'no memory samples')})."
                    )
                elif fit.get("points", 0) < 3:
                    out.append(
                        f"{prefix}{name}: {label} RAM per connection rests on "
                        f"{fit.get('points')} points; R² means nothing with two."
                    )
                elif (fit.get("r2") or 0) < LOW_R2:
                    out.append(
                        f"{prefix}{name}: {label} RAM per connection fits poorly "
                        f"(R² {fit.get('r2'):.3f} < {LOW_R2}); memory did not grow linearly "
                        "with connections, so the slope is a rough figure."
                    )
            idle = (run.scenario.get("workload") or {}).get("kind") == "idle"
            for step in result.get("steps", []):
                samples = step.get("samples") or 0
                conns = step.get("connections")
                if idle and not samples:
                    pass  # idle connections carry no messages: nothing to time
                elif samples < MIN_SAMPLES_P99:
                    out.append(
                        f"{prefix}{name} at {conns:,} connections: {samples:,} latency samples; "
                        f"p99 needs at least {MIN_SAMPLES_P99:,} to mean anything."
                    )
                elif samples < MIN_SAMPLES_P999:
                    out.append(
                        f"{prefix}{name} at {conns:,} connections: {samples:,} latency samples; "
                        f"p99.9 is set by its top {max(1, samples // 1000)} sample(s) and is a rough figure."
                    )
                if step.get("settled") is False:
                    out.append(
                        f"{prefix}{name} at {conns:,} connections: the ramp's backlog had not "
                        f"drained after {step.get('warmup_s')} s of warm-up; the hold measured "
                        "part of it."
                    )
                ramp = step.get("ramp") or {}
                achieved, requested = ramp.get("achieved_per_s"), ramp.get("requested_per_s")
                if achieved is not None and requested and achieved < 0.8 * requested:
                    out.append(
                        f"{prefix}{name} at {conns:,} connections: the ramp opened "
                        f"{achieved:,.0f} connections/s of the {requested:,.0f}/s asked; "
                        "connect latency was measured at that rate."
                    )
                target = step.get("target")
                if target and conns is not None and conns < target:
                    out.append(
                        f"{prefix}{name}: only {conns:,} of {target:,} connections were open "
                        "at that step."
                    )
            integrity = result.get("integrity") or {}
            if integrity and (integrity.get("lost") or integrity.get("duplicated")):
                out.append(
                    f"{prefix}{name}: {integrity.get('lost', 0):,} messages lost and "
                    f"{integrity.get('duplicated', 0):,} duplicated."
                )
            if integrity and not integrity.get("balanced", True):
                out.append(f"{prefix}{name}: the delivery accounting does not balance.")
    return out
