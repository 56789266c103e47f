"""Capacity planning from measured models: per transport, how many server hosts and how much
RAM serve N connections within a p99 objective.

The model of a transport comes from its runs: memory slope and intercept (the fit over the
connection steps), and per server process the steps that met the latency objective. A
Python server process uses one core, so a host of C cores runs C processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from reports.results import RunData
from reports.tables import Table, fmt_bytes, fmt_num

RAM_USABLE = 0.8
"""Share of a host's RAM the plan fills; the rest is the OS, page cache and spikes."""
CPU_TARGET = 0.7
"""Share of a core a server process is planned to use at the planned message rate."""
KERNEL_SERVER_SHARE = 0.5
"""Kernel socket memory is measured host-wide over loopback (both ends): the server's half."""


@dataclass(frozen=True)
class Request:
    connections: int
    msg_rate: float | None = None
    """Messages delivered per second in total; None: the measured rate per connection × N."""
    p99_ms: float = 50.0
    host_ram: int = 16 * 2**30
    host_cores: int = 4


@dataclass(frozen=True)
class StepPoint:
    connections: float
    """Per server process."""
    msgs_per_s: float
    """Delivered per second, per server process."""
    p99_ms: float | None
    cpu_s_per_1000: float | None
    generator_bound: bool


@dataclass(frozen=True)
class Model:
    transport: str
    source: str
    bytes_per_conn: float
    """User-space RSS slope, bytes per connection."""
    kernel_per_conn: float
    """Kernel socket memory per connection as measured (both ends on loopback)."""
    base_bytes_per_process: float
    steps: tuple[StepPoint, ...]
    largest_measured: int
    """Largest number of connections held in total in any measured step."""


@dataclass
class Plan:
    transport: str
    connections: int
    msg_rate: float
    processes: int | None = None
    hosts: int | None = None
    ram_bytes: float | None = None
    binding: str = ""
    extrapolation: float = 1.0
    notes: list[str] = field(default_factory=list)


def model_of(transport: str, runs: list[RunData]) -> Model | None:
    """The transport's model from the run that measured it at the most connections."""
    best: tuple[int, RunData, dict[str, Any]] | None = None
    for run in runs:
        result = run.transports.get(transport)
        if not result or not result.get("steps"):
            continue
        top = max(int(s.get("connections") or 0) for s in result["steps"])
        if best is None or top > best[0]:
            best = (top, run, result)
    if best is None:
        return None
    largest, run, result = best
    memory = result.get("memory") or {}
    rss = memory.get("rss") or {}
    kernel = memory.get("kernel") or {}
    if rss.get("bytes_per_conn") is None:
        return None
    processes = max(1, run.instances)
    points = [p for p in memory.get("points", []) if p.get("rss") is not None]
    intercept = _intercept(points, float(rss["bytes_per_conn"]))
    bound = bool((result.get("generator") or {}).get("generator_bound"))
    steps = tuple(
        StepPoint(
            connections=float(s.get("connections") or 0) / processes,
            msgs_per_s=float(s.get("msgs_per_s") or 0) / processes,
            p99_ms=(s.get("latency_ms") or {}).get("p99"),
            cpu_s_per_1000=s.get("server_cpu_s_per_1000_msgs"),
            generator_bound=bound,
        )
        for s in result["steps"]
    )
    return Model(
        transport=transport,
        source=run.name,
        bytes_per_conn=float(rss["bytes_per_conn"]),
        kernel_per_conn=float(kernel.get("bytes_per_conn") or 0.0),
        base_bytes_per_process=intercept / processes,
        steps=steps,
        largest_measured=largest,
    )


def _intercept(points: list[dict[str, Any]], slope: float) -> float:
    if not points:
        return 0.0
    xs = [float(p["connections"]) for p in points]
    ys = [float(p["rss"]) for p in points]
    return max(0.0, sum(ys) / len(ys) - slope * sum(xs) / len(xs))


def plan(model: Model, request: Request) -> Plan:
    n = request.connections
    top = max(model.steps, key=lambda s: s.connections)
    per_conn_rate = top.msgs_per_s / top.connections if top.connections else 0.0
    rate = request.msg_rate if request.msg_rate is not None else per_conn_rate * n
    out = Plan(model.transport, n, rate)
    out.extrapolation = n / model.largest_measured if model.largest_measured else math.inf
    if request.msg_rate is None:
        out.notes.append(
            f"message rate {rate:,.0f}/s assumed: {per_conn_rate:.2f} msgs/s per connection, as "
            f"measured at the largest step"
        )
    usable = [s for s in model.steps if not s.generator_bound]
    if not usable:
        out.notes.append(
            "every measured step had a saturated generator: the server's limits were not measured"
        )
        return out
    passing = [s for s in usable if s.p99_ms is not None and s.p99_ms <= request.p99_ms]
    failing = [s for s in usable if s.p99_ms is not None and s.p99_ms > request.p99_ms]
    if not passing:
        best = min((s.p99_ms for s in usable if s.p99_ms is not None), default=None)
        out.notes.append(
            f"no measured step met p99 ≤ {request.p99_ms:g} ms (best {best} ms): "
            "this transport cannot meet the objective on the measured hardware"
        )
        return out
    cap = max(passing, key=lambda s: s.connections)
    by_latency = 1
    if failing and min(s.connections for s in failing) > cap.connections:
        # The knee: p99 crossed the objective between cap and the next step.
        by_latency = max(
            math.ceil(n / cap.connections),
            math.ceil(rate / cap.msgs_per_s) if cap.msgs_per_s else 1,
        )
        out.notes.append(
            f"knee: p99 stayed within {request.p99_ms:g} ms up to {cap.connections:,.0f} "
            f"connections and {cap.msgs_per_s:,.0f} msgs/s per process, and exceeded it above"
        )
    else:
        out.notes.append(
            f"no knee measured: p99 stayed within {request.p99_ms:g} ms at every step up to "
            f"{cap.connections:,.0f} connections per process; the CPU model sets the limit"
        )
    cpu_cost = cap.cpu_s_per_1000
    by_cpu = 1
    if cpu_cost is not None and cpu_cost > 0:
        cores = rate / 1000 * cpu_cost / CPU_TARGET
        by_cpu = max(1, math.ceil(cores))
    else:
        out.notes.append("server CPU per message was not measured: CPU is not planned")
    processes = max(by_latency, by_cpu)
    hosts_cpu = math.ceil(processes / request.host_cores)
    per_conn = model.bytes_per_conn + model.kernel_per_conn * KERNEL_SERVER_SHARE
    base = model.base_bytes_per_process * request.host_cores
    room = request.host_ram * RAM_USABLE - base
    if room <= 0 or per_conn <= 0:
        out.notes.append("a host's usable RAM does not cover the server processes' baseline")
        return out
    hosts_ram = math.ceil(n * per_conn / room)
    out.hosts = max(1, hosts_cpu, hosts_ram)
    out.processes = max(processes, out.hosts)
    out.ram_bytes = n * per_conn + out.processes * model.base_bytes_per_process
    out.binding = (
        "memory"
        if hosts_ram > hosts_cpu
        else "latency (knee)"
        if by_latency >= by_cpu and by_latency > 1
        else "CPU"
    )
    return out


def plan_table(plans: list[Plan], request: Request) -> Table:
    table = Table(
        f"Capacity plan: {request.connections:,} connections, p99 ≤ {request.p99_ms:g} ms, "
        f"hosts of {request.host_cores} cores and {fmt_bytes(request.host_ram)}",
        [
            "Transport",
            "Msgs/s",
            "Server processes",
            "Hosts",
            "RAM needed",
            "Bound by",
            "Extrapolation",
        ],
    )
    for p in plans:
        table.rows.append(
            [
                p.transport,
                fmt_num(p.msg_rate),
                "cannot plan" if p.processes is None else f"{p.processes:,}",
                "cannot plan" if p.hosts is None else f"{p.hosts:,}",
                "cannot plan" if p.ram_bytes is None else fmt_bytes(p.ram_bytes),
                p.binding or "-",
                extrapolation_text(p.extrapolation),
            ]
        )
    return table


def extrapolation_text(factor: float) -> str:
    if factor <= 1.0:
        return "within the measured steps"
    return f"extrapolated {factor:,.1f}× beyond the largest measured step"


def assumptions(models: list[Model], request: Request) -> list[str]:
    lines = [
        f"One server process per core; each planned at {CPU_TARGET:.0%} of a core.",
        f"{RAM_USABLE:.0%} of a host's RAM is planned for; the rest is the OS and spikes.",
        "RAM per connection = user-space RSS slope + half the kernel socket slope (the kernel "
        "figure was measured over loopback, where both ends live on one host).",
        "Broker throughput was not measured: Redis Pub/Sub between hosts is not modelled, and "
        "each host receives every message of the channels its clients joined.",
        "Latency knee: the largest measured step per server process whose p99 met the "
        "objective; between steps nothing is interpolated.",
    ]
    for model in models:
        lines.append(
            f"{model.transport}: model from {model.source}: {fmt_bytes(model.bytes_per_conn)} "
            f"user + {fmt_bytes(model.kernel_per_conn)} kernel per connection, "
            f"{fmt_bytes(model.base_bytes_per_process)} per idle process, measured up to "
            f"{model.largest_measured:,} connections."
        )
    return lines
