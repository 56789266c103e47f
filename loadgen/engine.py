"""The coordinator: per transport, launch (or reach) the server, start the generator
workers, walk them through the steps, merge their per-second snapshots, probe the server,
and write everything down as it happens.

Workers (``loadgen.worker``) hold the connections; this process holds none. It speaks to
them only through ``loadgen.control``: ramp to N, change phase, tick (the last second's
counters and HDR histogram), final (integrity, connect phases, generator health).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from hdrh.histogram import HdrHistogram

from loadgen.control import RAMP_TIMEOUT_S, ControlChannel, start_local_workers
from loadgen.errors import LoadgenError, PlanError
from loadgen.launch import Launched, launch
from loadgen.probe import Probe, Sample, find_processes
from loadgen.results import ResultsWriter
from loadgen.scenario import Scenario
from loadgen.stats import Integrity, fit_line, new_histogram, p99_ms, percentiles_ms

DRAIN_S = 1.5
"""After the last send, wait at least this long and until nothing has arrived for this long..."""
DRAIN_MAX_S = 15.0
"""...but no longer than this: what has not arrived by then counts as lost."""
SETTLE_MAX_S = 15.0
GENERATOR_CPU_LIMIT = 90.0
GENERATOR_LAG_LIMIT_MS = 20.0
SOCKETS_PER_WORKER = 15_000
FD_HEADROOM = 200

Say = Callable[[str], None]
View = Callable[[dict[str, Any], dict[str, int]], None]
"""Called with each merged per-second row and the errors by kind so far (a live view)."""


def worker_count(scenario: Scenario) -> int:
    """One per core, more when one would hold over 15,000 sockets (``run.workers`` wins)."""
    if scenario.run.workers:
        return scenario.run.workers
    peak = max(scenario.run.steps)
    return max(os.cpu_count() or 1, math.ceil(peak / SOCKETS_PER_WORKER))


def _target_host(scenario: Scenario) -> str:
    if scenario.target.launch or not scenario.target.url:
        return "127.0.0.1"
    return urlsplit(scenario.target.url).hostname or "127.0.0.1"


def source_ip(scenario: Scenario, worker: int) -> str | None:
    """Each worker connects from its own loopback address when the target is on loopback,
    so each has the whole ephemeral port range to itself."""
    try:
        if not ipaddress.ip_address(_target_host(scenario)).is_loopback:
            return None
    except ValueError:
        return None
    if ipaddress.ip_address(_target_host(scenario)).version != 4:
        return None
    return f"127.0.{1 + worker // 250}.{1 + worker % 250}"


def _decode(encoded: str | None) -> HdrHistogram | None:
    return HdrHistogram.decode(encoded) if encoded else None


def _ramp_result(requested: float, opened: int, seconds: float) -> dict[str, Any]:
    """What the ramp asked for and what it got: connections opened over the ramp's time."""
    return {
        "requested_per_s": requested,
        "opened": opened,
        "seconds": round(seconds, 2),
        "achieved_per_s": round(opened / seconds, 1) if opened > 0 and seconds > 0 else None,
    }


def _merge(histograms: list[HdrHistogram | None]) -> HdrHistogram:
    total = new_histogram()
    for histogram in histograms:
        if histogram is not None:
            total.add(histogram)
    return total


class TransportRun:
    """One transport through every step of the scenario, from the coordinator's side."""

    def __init__(
        self,
        scenario: Scenario,
        transport: str,
        out: ResultsWriter,
        say: Say,
        repeat: int = 1,
        view: View | None = None,
    ) -> None:
        self.scenario = scenario
        self.view = view
        self.transport = transport
        self.out = out
        self.say = say
        self.repeat = repeat
        # Later repeats restart the clock, so their histogram intervals carry their own tag.
        self.tag = transport if repeat == 1 else f"{transport}#{repeat}"
        self.workers: list[ControlChannel] = []
        self.launched: Launched | None = None
        self.probe: Probe | None = None
        self.phase = "ramp"
        self.step = 0
        self.target = 0
        self.opened = 0
        """Connections open after the last ramp, by the workers' count."""
        self.rows: list[dict[str, Any]] = []
        self.row_latency: list[HdrHistogram] = []
        self.memory_points: list[dict[str, Any]] = []
        self.errors_total = 0
        self.t0 = time.monotonic()
        self._tick = asyncio.Event()
        self._last_server_cpu: float | None = None
        self.sampler_task: asyncio.Task[None] | None = None

    # -- workers -------------------------------------------------------------------

    async def start_workers(self) -> None:
        count = worker_count(self.scenario)
        self.workers = await start_local_workers(count, self.out.dir)
        launched = self.launched
        http_url = launched.http_url if launched else self.scenario.target.url
        h2_url = launched.h2_url if launched else self.scenario.target.h2_url
        cert = launched.cert if launched else self.scenario.target.ca_file
        await asyncio.gather(
            *(
                worker.request(
                    {
                        "op": "plan",
                        "worker": i,
                        "workers": count,
                        "transport": self.transport,
                        "scenario": self.scenario.as_dict(),
                        "http_url": http_url,
                        "h2_url": h2_url,
                        "cert": cert,
                        "source_ip": source_ip(self.scenario, i),
                    }
                )
                for i, worker in enumerate(self.workers)
            )
        )

    async def _all(self, command: dict[str, Any], timeout: float = 30.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.request(command, timeout) for w in self.workers)))

    async def ramp_to(self, total: int) -> int:
        answers = await self._all({"op": "ramp", "total": total}, RAMP_TIMEOUT_S)
        return sum(int(a["open"]) for a in answers)

    async def set_phase(self, phase: str, publishing: bool = True) -> None:
        self.phase = phase
        await self._all({"op": "phase", "phase": phase, "publishing": publishing})

    # -- sampling ------------------------------------------------------------------

    async def sampler(self) -> None:
        tick = time.monotonic()
        while True:
            tick += 1.0
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            await self.sample_once()

    async def sample_once(self) -> None:
        phase = self.phase
        snapshots = await self._all({"op": "tick"})
        latency = _merge([_decode(s["latency"]) for s in snapshots])
        lag = _merge([_decode(s["lag"]) for s in snapshots])
        sample = self.probe.sample() if self.probe else None
        server_cpu = None
        if sample is not None:
            if self._last_server_cpu is not None:
                server_cpu = (sample.cpu_s - self._last_server_cpu) * 100
            self._last_server_cpu = sample.cpu_s
        t = round(time.monotonic() - self.t0, 3)
        pcts = percentiles_ms(latency)
        lag_p99 = p99_ms(lag)
        errors: dict[str, int] = {}
        for snapshot in snapshots:
            for kind, count in snapshot["errors"].items():
                errors[kind] = errors.get(kind, 0) + int(count)
        self.errors_total = sum(errors.values())
        row: dict[str, Any] = {
            "t_s": t,
            "transport": self.transport,
            "repeat": self.repeat,
            "step": self.step,
            "phase": phase,
            "connections": sum(int(s["connections"]) for s in snapshots),
            "target": self.target,
            "msgs_in_per_s": sum(int(s["received"]) for s in snapshots),
            "msgs_out_per_s": sum(int(s["sent"]) for s in snapshots),
            "p50_ms": pcts["p50"],
            "p99_ms": pcts["p99"],
            "server_rss": sample.rss if sample else None,
            "server_uss": sample.uss if sample else None,
            "server_cpu_pct": round(server_cpu, 1) if server_cpu is not None else None,
            "kernel_bytes": sample.kernel if sample else None,
            # Per process: the busiest worker is the one that saturates first.
            "gen_cpu_pct": max(float(s["cpu_pct"]) for s in snapshots),
            "gen_cpu_total_pct": round(sum(float(s["cpu_pct"]) for s in snapshots), 1),
            "gen_rss": sum(int(s["rss"]) for s in snapshots),
            "gen_loop_lag_p99_ms": lag_p99,
            "errors": self.errors_total,
        }
        self.rows.append(row)
        self.row_latency.append(latency)
        self.out.series(row)
        self.out.interval(self.tag, t - 1.0, 1.0, latency)
        if self.view is not None:
            self.view(row, errors)
        else:
            self.say(
                f"  {self.transport:<6} {phase:<6} conns {row['connections']:>6}/{row['target']:<6}"
                f" in {row['msgs_in_per_s']:>6}/s  p50 {_ms(pcts['p50'])}  p99 {_ms(pcts['p99'])}"
                f"  errors {row['errors']}  gen cpu {row['gen_cpu_pct']:.0f}%"
                f" lag p99 {_ms(lag_p99)}"
            )
        self._tick.set()
        self._tick = asyncio.Event()

    async def next_tick(self) -> None:
        """Wait for the sampler's next row; if the sampler failed (a worker died or stopped
        answering), raise its error instead of waiting forever."""
        sampler = self.sampler_task
        assert sampler is not None
        waiter = asyncio.ensure_future(self._tick.wait())
        try:
            await asyncio.wait({waiter, sampler}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if sampler.done() and not waiter.done():
            error = None if sampler.cancelled() else sampler.exception()
            raise error or LoadgenError("the per-second sampler stopped")

    async def settle(self, limit_s: float) -> bool:
        """Extend the warm-up until the ramp's backlog has drained: one whole second in
        which deliveries match sends (× channel size for fan-out) within 10 % and the
        median latency is within twice the lowest seen since the ramp. False at the limit."""
        w = self.scenario.workload
        fanout = {"fanout": w.channel_size, "reconnect-storm": w.channel_size}.get(w.kind)
        if w.kind in ("echo", "ws-echo"):
            fanout = 1
        if fanout is None:
            return True
        first = len(self.rows)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            await self.next_tick()
            rows = self.rows[first:]
            last = rows[-1]
            expected = last["msgs_out_per_s"] * fanout
            lows = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
            # Within 10 %, or two sends' worth at low rates where one second holds few.
            slack = max(0.1 * expected, 2 * fanout)
            steady_rate = expected > 0 and abs(last["msgs_in_per_s"] - expected) <= slack
            steady_latency = last["p50_ms"] is not None and last["p50_ms"] <= 2 * min(lows) + 1.0
            if steady_rate and steady_latency:
                return True
        return False

    async def drain(self, quiet_s: float, limit_s: float) -> None:
        """Let in-flight messages land: until ``quiet_s`` passes with nothing received."""
        deadline = time.monotonic() + limit_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await self.next_tick()
            if self.rows[-1]["msgs_in_per_s"]:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    def memory_point(
        self, connections: int, samples: list[Sample], gen_rss: float | None = None
    ) -> None:
        if not samples and gen_rss is None:
            return

        def avg(values: list[int | None]) -> float | None:
            kept = [v for v in values if v is not None]
            return sum(kept) / len(kept) if kept else None

        self.memory_points.append(
            {
                "connections": connections,
                "rss": avg([s.rss for s in samples]),
                "uss": avg([s.uss for s in samples]),
                "kernel": avg([s.kernel for s in samples]),
                "kernel_source": samples[-1].kernel_source if samples else None,
                "generator_rss": gen_rss,
            }
        )

    # -- one step ------------------------------------------------------------------

    async def run_step(self, step: int) -> dict[str, Any]:
        scenario = self.scenario
        self.step, self.target = step, step
        await self.set_phase("ramp")
        self.say(
            f"{self.transport}: ramping to {step:,} connections at {scenario.run.ramp_rate:g}/s"
        )
        open_before = self.opened
        ramp_started = time.monotonic()
        opened = self.opened = await self.ramp_to(step)
        ramp = _ramp_result(
            scenario.run.ramp_rate, opened - open_before, time.monotonic() - ramp_started
        )
        if (
            ramp["achieved_per_s"] is not None
            and ramp["achieved_per_s"] < 0.8 * ramp["requested_per_s"]
        ):
            self.say(
                f"{self.transport}: opened {opened - open_before:,} connections at "
                f"{ramp['achieved_per_s']:,.0f}/s, below the {scenario.run.ramp_rate:g}/s asked "
                f"with {scenario.run.connect_concurrency} connects in flight at most "
                "(run.connect_concurrency)"
            )
        await self.set_phase("warmup")
        warm_started = time.monotonic()
        await asyncio.sleep(scenario.run.warmup_s)
        settled = await self.settle(SETTLE_MAX_S)
        warmup_took = time.monotonic() - warm_started
        if not settled:
            self.say(
                f"{self.transport}: step {step} did not settle within {warmup_took:.0f} s of "
                "warm-up; measuring anyway (flagged)"
            )
        # The hold is whole ticks: it starts right after one and lasts hold_s of them.
        await self.next_tick()
        await self.set_phase("hold")
        first = len(self.rows)
        samples: list[Sample] = []
        storm: asyncio.Task[list[dict[str, Any]]] | None = None
        w = scenario.workload
        storm_at = w.storm_at_s if w.storm_at_s is not None else scenario.run.hold_s // 3
        while len(self.rows) - first < round(scenario.run.hold_s):
            if w.kind == "reconnect-storm" and storm is None and len(self.rows) - first >= storm_at:
                self.say(
                    f"{self.transport}: storm: cutting {w.drop_fraction:.0%} of the subscribers"
                )
                storm = asyncio.create_task(
                    self._all({"op": "storm", "fraction": w.drop_fraction}, RAMP_TIMEOUT_S)
                )
            await self.next_tick()
            if self.probe:
                samples.append(self.probe.sample())
        storm_result = self._storm_result(await storm) if storm is not None else None
        await self.set_phase("after")
        hold_rows = self.rows[first : first + round(scenario.run.hold_s)]
        latency = _merge(list(self.row_latency[first : first + len(hold_rows)]))
        open_now = hold_rows[-1]["connections"]
        self.memory_point(open_now, samples, _mean([r["gen_rss"] for r in hold_rows]))
        seconds = len(hold_rows)
        received = sum(r["msgs_in_per_s"] for r in hold_rows)
        sent = sum(r["msgs_out_per_s"] for r in hold_rows)
        result: dict[str, Any] = {
            "connections": open_now,
            "target": step,
            "latency_ms": percentiles_ms(latency),
            "samples": latency.get_total_count(),
            "histogram": latency.encode().decode() if latency.get_total_count() else None,
            "msgs_per_s": received / seconds,
            "sent_per_s": sent / seconds,
            "server_cpu_pct": _mean([r["server_cpu_pct"] for r in hold_rows]),
            "gen_cpu_pct": _mean([r["gen_cpu_pct"] for r in hold_rows]),
            "gen_loop_lag_p99_ms": _max([r["gen_loop_lag_p99_ms"] for r in hold_rows]),
            "warmup_s": round(warmup_took, 1),
            "settled": settled,
            "ramp": ramp,
        }
        if storm_result is not None:
            result["storm"] = storm_result
        msgs, cpu = result["msgs_per_s"], result["server_cpu_pct"]
        result["server_cpu_s_per_1000_msgs"] = (
            round(cpu / 100 / msgs * 1000, 4) if cpu is not None and msgs > 0 else None
        )
        # The generator's own cost: every worker's CPU over the hold per 1,000 received.
        gen_cpu = _mean([r["gen_cpu_total_pct"] for r in hold_rows])
        result["gen_cpu_s_per_1000_msgs"] = (
            round(gen_cpu / 100 / msgs * 1000, 4) if gen_cpu is not None and msgs > 0 else None
        )
        self.say(
            f"{self.transport}: step {step}: {open_now} open, p50 {_ms(result['latency_ms']['p50'])}"
            f", p99 {_ms(result['latency_ms']['p99'])}, {msgs:.0f} msgs/s"
        )
        return result

    @staticmethod
    def _storm_result(answers: list[dict[str, Any]]) -> dict[str, Any]:
        failed: dict[str, int] = {}
        for answer in answers:
            for kind, count in answer["failed"].items():
                failed[kind] = failed.get(kind, 0) + int(count)
        return {
            "dropped": sum(int(a["dropped"]) for a in answers),
            "resumed": sum(int(a["resumed"]) for a in answers),
            "failed": failed,
            "resume_ms": percentiles_ms(_merge([_decode(a["resume"]) for a in answers])),
        }

    async def finish(self, result: dict[str, Any]) -> None:
        """Integrity, errors, connect phases and generator health from every worker."""
        # A channel's publishers may sit in several workers (chat): merge every worker's
        # last acknowledged id per channel before each accounts for what it received.
        final_ids: dict[str, int] = {}
        for answer in await self._all({"op": "acks"}):
            for ch, last in answer["final_ids"].items():
                final_ids[ch] = max(final_ids.get(ch, 0), int(last))
        finals = await self._all({"op": "final", "final_ids": final_ids}, timeout=60)
        integrity = Integrity()
        errors: dict[str, int] = {}
        for final in finals:
            for key in ("expected", "delivered", "lost", "duplicated", "out_of_order"):
                setattr(integrity, key, getattr(integrity, key) + int(final["integrity"][key]))
            for kind, count in final["errors"].items():
                errors[kind] = errors.get(kind, 0) + int(count)
        result["integrity"] = integrity.as_dict()
        result["errors"] = errors
        if self.scenario.workload.kind == "chat":
            result["chat"] = {
                "room_moves": sum(int(f["churn_moves"]) for f in finals),
                "gated_refusals": sum(int(f["refused_joins"]) for f in finals),
            }
        result["connect_ms"] = {
            name: percentiles_ms(_merge([_decode(f["connect_ms"][name]) for f in finals]))
            for name in finals[0]["connect_ms"]
        }
        hold_lag = _merge([_decode(f["hold_lag"]) for f in finals])
        schedule_lag = _merge([_decode(f["schedule_lag"]) for f in finals])
        result["generator"] = self._health(hold_lag, schedule_lag)

    def _health(self, hold_lag: HdrHistogram, schedule_lag: HdrHistogram) -> dict[str, Any]:
        hold = [r for r in self.rows if r["phase"] == "hold"]
        cpu = _max([r["gen_cpu_pct"] for r in hold])
        lag = p99_ms(hold_lag)
        sched = p99_ms(schedule_lag)
        reasons = []
        if cpu is not None and cpu >= GENERATOR_CPU_LIMIT:
            reasons.append(f"a generator worker reached {cpu:.0f}% of a core")
        if lag is not None and lag > GENERATOR_LAG_LIMIT_MS:
            reasons.append(f"event-loop lag p99 reached {lag:.1f} ms")
        return {
            "workers": len(self.workers),
            "cpu_pct_max": cpu,
            "loop_lag_p99_ms": lag,
            "schedule_lag_p99_ms": sched,
            "generator_bound": bool(reasons),
            "why": "; ".join(reasons) or None,
        }


def _ms(value: float | None) -> str:
    return f"{value:7.2f}ms" if value is not None else "      --"


def preflight(scenario: Scenario) -> None:
    """Refuse a plan this host cannot run, with the reason."""
    peak = max(scenario.run.steps)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    workers = worker_count(scenario)
    per_worker = math.ceil(peak / workers)
    if per_worker + FD_HEADROOM > soft:
        raise PlanError(
            f"this host can open at most {soft - FD_HEADROOM} connections per generator "
            f"process because its open-file limit is {soft}; {workers} worker(s) would each "
            f"hold {per_worker}: set run.workers to {math.ceil(peak / (soft - FD_HEADROOM))} "
            "or more"
        )
    if scenario.target.launch:
        per_server = math.ceil(peak / scenario.target.processes)
        if per_server + FD_HEADROOM > soft:
            raise PlanError(
                f"each server process would hold {per_server} connections but this host "
                f"allows {soft} open files per process; set target.processes to "
                f"{math.ceil(peak / (soft - FD_HEADROOM))} or more"
            )
    try:
        low, high = (
            int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
        spread = source_ip(scenario, 0) is not None
        per_address = per_worker if spread else peak
        if per_address > high - low:
            raise PlanError(
                f"this host can open at most {high - low} connections to one address:port from "
                f"one source address because the ephemeral port range is {low}-{high}"
                + (
                    "; add workers (run.workers) to spread over more source addresses"
                    if spread
                    else ""
                )
            )
    except OSError:
        pass
    available = psutil.virtual_memory().available
    if peak * 60_000 > available:
        raise PlanError(
            f"{peak} connections need about {peak * 60_000 // 2**20} MiB (60 KB each, both sides) "
            f"but only {available // 2**20} MiB is available"
        )


async def run_transport(
    scenario: Scenario,
    transport: str,
    out: ResultsWriter,
    say: Say,
    result: dict[str, Any],
    flush: Callable[[], None],
    repeat: int = 1,
    view: View | None = None,
) -> None:
    """Fill ``result`` step by step, calling ``flush`` after each so nothing measured is lost."""
    state = TransportRun(scenario, transport, out, say, repeat, view)
    target = scenario.target
    result.update({"transport": transport, "steps": []})
    try:
        if target.launch:
            broker = (
                "valkey" if target.processes > 1 and target.broker == "memory" else target.broker
            )
            state.launched = await asyncio.to_thread(
                launch, transport, broker=broker, processes=target.processes, log_dir=out.dir
            )
            state.probe = Probe(state.launched.pids)
            result["server_pids"] = state.launched.pids
        elif target.probe:
            try:
                pids = find_processes(target.probe)
            except LookupError as exc:
                raise PlanError(f"target.probe = {target.probe!r}: {exc}") from None
            state.probe = Probe(pids)
            result["server_pids"] = pids
        baseline = [state.probe.sample() for _ in range(3)] if state.probe else []
        state.memory_point(0, baseline)
        await state.start_workers()
        sampler = state.sampler_task = asyncio.create_task(state.sampler())
        try:
            # The generator's own baseline, for its memory per connection.
            await state.next_tick()
            if state.memory_points:
                state.memory_points[0]["generator_rss"] = state.rows[-1]["gen_rss"]
            else:
                state.memory_point(0, [], state.rows[-1]["gen_rss"])
            for step in scenario.run.steps:
                result["steps"].append(await state.run_step(step))
                result["memory"] = _memory_fit(state.memory_points)
                flush()
            await state.set_phase("drain", publishing=False)
            if scenario.workload.kind != "sse-plain":  # that server never stops sending
                await state.drain(DRAIN_S, DRAIN_MAX_S)
            sampler.cancel()
            await state.finish(result)
        finally:
            sampler.cancel()
            result["memory"] = _memory_fit(state.memory_points)
            if "integrity" not in result and state.workers:
                # Interrupted or failed: still account for what was delivered so far.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(state.finish(result), 10)
            await asyncio.gather(*(w.close() for w in state.workers), return_exceptions=True)
    finally:
        if state.launched is not None:
            await asyncio.to_thread(state.launched.stop)


def _mean(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 2) if kept else None


def _max(values: list[Any]) -> float | None:
    kept = [v for v in values if v is not None]
    return max(kept) if kept else None


def _memory_fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"points": points}
    xs = [p["connections"] for p in points]
    for key in ("rss", "uss", "kernel", "generator_rss"):
        pairs = [
            (float(x), float(p[key]))
            for x, p in zip(xs, points, strict=True)
            if p.get(key) is not None
        ]
        fit = fit_line([a for a, _ in pairs], [b for _, b in pairs])
        out[key] = (
            {"bytes_per_conn": round(fit[0]), "r2": round(fit[2], 4), "points": len(pairs)}
            if fit
            else {
                "bytes_per_conn": None,
                "r2": None,
                "points": len(pairs),
                "why": "fewer than two connection levels were measured"
                if pairs
                else "the server was not launched by rtbench and target.probe was not set",
            }
        )
    out["kernel_note"] = "kernel memory is host-wide: both ends of each loopback connection"
    return out


def _repeat_figures(result: dict[str, Any]) -> dict[str, Any]:
    """What compare needs from each repeat to draw a noise band."""
    memory = result.get("memory", {})
    return {
        "steps": result.get("steps", []),
        "memory": {key: memory.get(key) for key in ("rss", "uss", "kernel")},
        "integrity": result.get("integrity"),
    }


async def run_scenario(
    scenario: Scenario, results_root: Path, say: Say, view: View | None = None
) -> Path:
    preflight(scenario)
    out = ResultsWriter(results_root, scenario.name, scenario.as_dict())
    say(f"results: {out.dir}  ({worker_count(scenario)} generator worker(s))")
    summary: dict[str, Any] = {"scenario": scenario.name, "partial": True, "transports": {}}
    out.summary(summary)
    try:
        repeats = scenario.run.repeats
        for transport in scenario.run.transports:
            rounds: list[dict[str, Any]] = []
            for repeat in range(1, repeats + 1):
                summary["running"] = transport if repeats == 1 else f"{transport} repeat {repeat}"
                result: dict[str, Any] = {}
                if repeat == 1:
                    summary["transports"][transport] = result
                else:
                    say(f"{transport}: repeat {repeat} of {repeats}")
                await run_transport(
                    scenario,
                    transport,
                    out,
                    say,
                    result,
                    lambda: out.summary(summary),
                    repeat,
                    view,
                )
                if repeats > 1:
                    rounds.append(_repeat_figures(result))
                    summary["transports"][transport]["repeats"] = rounds
                out.summary(summary)
        summary.pop("running", None)
        summary["partial"] = False
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        summary["stopped"] = f"interrupted during {summary.get('running')}: {type(exc).__name__}"
        raise
    except LoadgenError as exc:
        summary["stopped"] = str(exc)
        raise
    finally:
        out.summary(summary)
        out.close()
    return out.dir


def main_run(
    scenario: Scenario, results_root: Path, say: Say = print, view: View | None = None
) -> Path:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(run_scenario(scenario, results_root, say, view))
