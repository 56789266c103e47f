"""Run a scenario: per transport, launch (or reach) the server, ramp through the steps,
drive an open-loop workload, sample every second, and account for every message.

This version runs one generator process; the per-second snapshot it builds is the
unit the multi-process control channel will carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from loadgen.clients import (
    Client,
    ConnectError,
    PlainSseClient,
    PlainWsClient,
    Sse2Client,
    SseClient,
    WsClient,
)
from loadgen.errors import LoadgenError, PlanError
from loadgen.h2conn import h2_context
from loadgen.launch import Launched, launch
from loadgen.probe import Probe, Sample
from loadgen.results import ResultsWriter
from loadgen.scenario import Scenario
from loadgen.stats import (
    ChannelTrack,
    Integrity,
    IntervalRecorder,
    fit_line,
    new_histogram,
    percentiles_ms,
)
from servers.core import protocol

OPEN_CONCURRENCY = 100
CONNECT_TIMEOUT_S = 10.0
DRAIN_S = 1.5
"""After the last send, wait at least this long and until nothing has arrived for this long..."""
DRAIN_MAX_S = 15.0
"""...but no longer than this: what has not arrived by then counts as lost."""
SETTLE_MAX_S = 15.0
LAG_TICK_S = 0.01
GENERATOR_CPU_LIMIT = 90.0
GENERATOR_LAG_LIMIT_MS = 20.0

Say = Callable[[str], None]


def channel_for(index: int, channel_size: int) -> str:
    k = index // channel_size
    return f"dao:{k % 10 + 1}:topic-{(k // 10) % 100}"


class TransportRun:
    """One transport through every step of the scenario."""

    def __init__(
        self, scenario: Scenario, transport: str, out: ResultsWriter, say: Say, repeat: int = 1
    ) -> None:
        self.scenario = scenario
        self.transport = transport
        self.repeat = repeat
        # Later repeats restart the clock, so their histogram intervals carry their own tag.
        self.tag = transport if repeat == 1 else f"{transport}#{repeat}"
        self.out = out
        self.say = say
        self.clients: list[Client] = []
        self.latency = IntervalRecorder()
        self.connect_ms: dict[str, Any] = {
            "tcp_tls": new_histogram(),
            "token": new_histogram(),
            "upgrade": new_histogram(),
            "join": new_histogram(),
        }
        self.errors: dict[str, int] = {}
        self.received = 0
        self.sent = 0
        self.tracks: dict[int, ChannelTrack] = {}
        self.final_ids: dict[str, int] = {}
        self.lag = new_histogram()
        self.hold_lag = new_histogram()
        """Loop lag over every measured (hold) second: what generator health is judged on."""
        self.schedule_lag = new_histogram()
        self.phase = "ramp"
        self.step = 0
        self.memory_points: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.steps_done: list[dict[str, Any]] = []
        self.launched: Launched | None = None
        self.probe: Probe | None = None
        self._publishing = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self.t0 = time.monotonic()

    # -- frames --------------------------------------------------------------------

    def on_frame(self, client: Client, frame: dict[str, Any], received_ns: int) -> None:
        op = frame.get("op")
        if op == "msg":
            self.received += 1
            body = frame.get("body")
            if isinstance(body, dict) and "t" in body:
                self.latency.record((received_ns - int(body["t"])) // 1000)
            track = self.tracks.get(client.index)
            if track is not None:
                track.observe(int(frame["id"]))
        elif op == "echo":
            self.received += 1
            body = frame.get("body")
            if isinstance(body, dict) and "t" in body:
                self.latency.record((received_ns - int(body["t"])) // 1000)
            else:
                self._count("echo_unrecognised")
        elif op == "plain":
            self.received += 1
            if frame["us"] is not None:
                self.latency.record(frame["us"])
            else:
                self._count("event_without_time")
        elif op == "joined" and frame.get("ch") == client.channel:
            # Track from the join itself: messages can follow in the same read, before
            # the connect coroutine resumes.
            self.tracks[client.index] = ChannelTrack(int(frame.get("last", 0)))
        elif op == "ack":
            ch = client.channel
            self.final_ids[ch] = max(self.final_ids.get(ch, 0), int(frame["id"]))
        elif op == "error":
            self._count(f"error:{frame.get('code')}")

    def _count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- connections ---------------------------------------------------------------

    async def _token(self, client: Client, http: aiohttp.ClientSession, base: str) -> str:
        started = time.perf_counter()
        user = client.user
        secret = protocol.user_secret(
            protocol.generated_realm_secret(self.scenario.target.realm_seed), user
        )
        if isinstance(client, Sse2Client):
            status, data = await client.request(
                "/v1/auth/token", orjson.dumps({"user": user, "secret": secret})
            )
        else:
            async with http.post(
                f"{base}/v1/auth/token", data=orjson.dumps({"user": user, "secret": secret})
            ) as r:
                status, data = r.status, await r.read()
        if status != 200:
            raise ConnectError(f"token_http_{status}")
        self.connect_ms["token"].record_value(max(1, int((time.perf_counter() - started) * 1e6)))
        return str(orjson.loads(data)["token"])

    def _make_client(
        self, index: int, http: aiohttp.ClientSession, tls: ssl.SSLContext | None
    ) -> Client:
        w = self.scenario.workload
        args = (index, f"u{index}", channel_for(index, w.channel_size), self.on_frame)
        assert self.launched is not None or self.scenario.target.url
        http_url = self.launched.http_url if self.launched else self.scenario.target.url
        if w.kind == "ws-echo":
            assert http_url
            return PlainWsClient(*args, http=http, ws_url=http_url)
        if w.kind == "sse-plain":
            assert http_url
            return PlainSseClient(*args, http=http, url=http_url, time_field=w.time_field)
        if self.transport == "ws":
            assert http_url
            return WsClient(*args, http=http, ws_url=http_url.replace("http", "ws", 1) + "/v1/ws")
        if self.transport == "sse":
            assert http_url
            return SseClient(*args, http=http, base_url=http_url)
        h2_url = self.launched.h2_url if self.launched else self.scenario.target.h2_url
        assert h2_url and tls is not None
        return Sse2Client(*args, base_url=h2_url, tls=tls)

    async def _open(self, client: Client, http: aiohttp.ClientSession) -> None:
        base = (
            (self.launched.h2_url if isinstance(client, Sse2Client) else self.launched.http_url)
            if self.launched
            else self.scenario.target.url
        )
        assert base
        try:
            if isinstance(client, Sse2Client):
                await client.prepare(CONNECT_TIMEOUT_S)
            plain = isinstance(client, PlainWsClient | PlainSseClient)
            token = "" if plain else await self._token(client, http, base)
            await client.connect(token, CONNECT_TIMEOUT_S)
        except ConnectError as exc:
            self._count(exc.kind)
            await client.close()
            return
        except (aiohttp.ClientError, OSError, Exception) as exc:
            self._count(type(exc).__name__)
            await client.close()
            return
        for name in ("tcp_tls", "upgrade", "join"):
            value = client.phases.get(f"{name}_ms")
            if value is not None:
                self.connect_ms[name].record_value(max(1, int(value * 1000)))
        self.clients.append(client)
        self._start_workload(client)

    async def ramp_to(
        self, target: int, http: aiohttp.ClientSession, tls: ssl.SSLContext | None
    ) -> None:
        rate = self.scenario.run.ramp_rate
        first_index = self._next_index
        count = target - len(self.clients)
        semaphore = asyncio.Semaphore(OPEN_CONCURRENCY)
        began = time.monotonic()

        async def one(i: int) -> None:
            async with semaphore:
                await self._open(self._make_client(i, http, tls), http)

        tasks = []
        for n in range(count):
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(first_index + n)))
        await asyncio.gather(*tasks)
        self._next_index = first_index + count

    _next_index = 0

    # -- workload ------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_workload(self, client: Client) -> None:
        w = self.scenario.workload
        if w.kind == "fanout" and client.index % w.channel_size == 0:
            self._spawn(self._schedule(client, w.rate, client.publish))
        elif w.kind in ("echo", "ws-echo"):
            self._spawn(self._schedule(client, w.rate, client.echo))
        if w.heartbeat_s and w.kind not in ("ws-echo", "sse-plain"):
            self._spawn(self._heartbeats(client, w.heartbeat_s))

    async def _schedule(self, client: Client, rate: float, send: Callable[[Any], Any]) -> None:
        """Open loop: sends happen at intended times whatever the replies do; a late send
        keeps its intended time, so the delay counts as latency."""
        period_ns = int(1e9 / rate)
        pad = "x" * self.scenario.workload.payload_bytes
        # Spread the first sends over one period so publishers do not fire in lockstep.
        intended = time.monotonic_ns() + (hash(client.index) % 1000) * period_ns // 1000
        sending: set[asyncio.Task[Any]] = set()
        while self._publishing and client.open:
            delay = (intended - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic_ns()
            self.schedule_lag.record_value(max(1, (now - intended) // 1000))
            body = {"t": intended, "p": pad}
            self.sent += 1
            if isinstance(client, WsClient):
                await send(body)
            else:
                task = asyncio.create_task(send(body))
                sending.add(task)
                task.add_done_callback(sending.discard)
            intended += period_ns

    async def _heartbeats(self, client: Client, every_s: float) -> None:
        while client.open:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await client.heartbeat()

    # -- sampling ------------------------------------------------------------------

    async def _loop_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            late = time.monotonic() - before - LAG_TICK_S
            value = max(1, int(late * 1e6))
            self.lag.record_value(value)
            if self.phase == "hold":
                self.hold_lag.record_value(value)

    async def sampler(self, target: Callable[[], int]) -> None:
        me = psutil.Process()
        me.cpu_percent()
        last_received, last_sent = self.received, self.sent
        last_server_cpu: float | None = None
        tick = time.monotonic()
        while True:
            tick += 1.0
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            interval = self.latency.rotate()
            lag = self.lag
            self.lag = new_histogram()
            sample = self.probe.sample() if self.probe else None
            server_cpu = None
            if sample is not None:
                if last_server_cpu is not None:
                    server_cpu = (sample.cpu_s - last_server_cpu) * 100
                last_server_cpu = sample.cpu_s
            t = round(time.monotonic() - self.t0, 3)
            pcts = percentiles_ms(interval)
            lag_p99 = lag.get_value_at_percentile(99) / 1000 if lag.get_total_count() else None
            row: dict[str, Any] = {
                "t_s": t,
                "transport": self.transport,
                "repeat": self.repeat,
                "step": self.step,
                "phase": self.phase,
                "connections": sum(1 for c in self.clients if c.open),
                "target": target(),
                "msgs_in_per_s": self.received - last_received,
                "msgs_out_per_s": self.sent - last_sent,
                "p50_ms": pcts["p50"],
                "p99_ms": pcts["p99"],
                "server_rss": sample.rss if sample else None,
                "server_uss": sample.uss if sample else None,
                "server_cpu_pct": round(server_cpu, 1) if server_cpu is not None else None,
                "kernel_bytes": sample.kernel if sample else None,
                "gen_cpu_pct": me.cpu_percent(),
                "gen_loop_lag_p99_ms": lag.get_value_at_percentile(99) / 1000
                if lag.get_total_count()
                else None,
                "errors": sum(self.errors.values()),
            }
            last_received, last_sent = self.received, self.sent
            self.rows.append(row)
            self.out.series(row)
            self.out.interval(self.tag, t - 1.0, 1.0, interval)
            self.say(
                f"  {self.transport:<6} {self.phase:<6} conns {row['connections']:>6}/{row['target']:<6}"
                f" in {row['msgs_in_per_s']:>6}/s  p50 {_ms(pcts['p50'])}  p99 {_ms(pcts['p99'])}"
                f"  errors {row['errors']}  gen cpu {row['gen_cpu_pct']:.0f}%"
                f" lag p99 {_ms(lag_p99)}"
            )

    async def drain(self, quiet_s: float, limit_s: float) -> None:
        """Let in-flight messages land: until ``quiet_s`` passes with nothing received."""
        deadline = time.monotonic() + limit_s
        last, quiet_since = self.received, time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if self.received != last:
                last, quiet_since = self.received, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    async def settle(self, limit_s: float) -> bool:
        """Extend the warm-up until the ramp's backlog has drained: one whole second in
        which deliveries match sends (× channel size for fan-out) within 10 % and the
        median latency is within twice the lowest seen since the ramp. False at the limit."""
        w = self.scenario.workload
        fanout = {"fanout": w.channel_size, "echo": 1}.get(w.kind)
        if fanout is None:
            return True
        first = len(self.rows)
        deadline = time.monotonic() + limit_s
        while True:
            rows = self.rows[first:]
            if rows:
                last = rows[-1]
                expected = last["msgs_out_per_s"] * fanout
                lows = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
                steady_rate = (
                    expected > 0 and abs(last["msgs_in_per_s"] - expected) <= 0.1 * expected
                )
                steady_latency = (
                    last["p50_ms"] is not None and last["p50_ms"] <= 2 * min(lows) + 1.0
                )
                if steady_rate and steady_latency:
                    return True
            if time.monotonic() >= deadline:
                return False
            count = len(self.rows)
            while len(self.rows) == count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    def memory_point(self, connections: int, samples: list[Sample]) -> None:
        if not samples:
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
                "kernel_source": samples[-1].kernel_source,
            }
        )


def _ms(value: float | None) -> str:
    return f"{value:7.2f}ms" if value is not None else "      --"


def preflight(scenario: Scenario) -> None:
    """Refuse a plan this host cannot run, with the reason."""
    import resource

    peak = max(scenario.run.steps)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    # One process holds every client socket here (and the SSE POST pool): keep headroom.
    needed = peak + 200
    if needed > soft:
        raise PlanError(
            f"this host can open at most {soft - 200} connections from one generator process "
            f"because its open-file limit is {soft}; lower run.steps to {soft - 200} or below"
        )
    try:
        low, high = (
            int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
        if peak > high - low:
            raise PlanError(
                f"this host can open at most {high - low} connections to one address:port "
                f"because the ephemeral port range is {low}-{high}"
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
) -> None:
    """Fill ``result`` step by step, calling ``flush`` after each so nothing measured is lost."""
    state = TransportRun(scenario, transport, out, say, repeat)
    target = scenario.target
    tls: ssl.SSLContext | None = None
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
        if transport == "sse-h2":
            cafile = state.launched.cert if state.launched else target.ca_file
            tls = h2_context(cafile)
        baseline = [state.probe.sample() for _ in range(3)] if state.probe else []
        state.memory_point(0, baseline)
        current_target = 0
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as http:
            lag_task = asyncio.create_task(state._loop_lag())
            sampler = asyncio.create_task(state.sampler(lambda: current_target))
            try:
                for step in scenario.run.steps:
                    current_target = step
                    state.step, state.phase = step, "ramp"
                    say(
                        f"{transport}: ramping to {step} connections at {scenario.run.ramp_rate:g}/s"
                    )
                    await state.ramp_to(step, http, tls)
                    # The connections now open live until the end: move them out of the
                    # cyclic collector's sight, or its full passes stall the loop for tens
                    # of milliseconds at a few thousand connections and show up as latency.
                    gc.collect()
                    gc.freeze()
                    state.phase = "warmup"
                    warm_started = time.monotonic()
                    await asyncio.sleep(scenario.run.warmup_s)
                    settled = await state.settle(SETTLE_MAX_S)
                    warmup_took = time.monotonic() - warm_started
                    if not settled:
                        say(
                            f"{transport}: step {step} did not settle within "
                            f"{warmup_took:.0f} s of warm-up; measuring anyway (flagged)"
                        )
                    state.phase = "hold"
                    state.latency.total = new_histogram()
                    state.latency.measuring = True
                    received_before, sent_before = state.received, state.sent
                    samples: list[Sample] = []
                    hold_end = time.monotonic() + scenario.run.hold_s
                    while time.monotonic() < hold_end:
                        await asyncio.sleep(min(1.0, hold_end - time.monotonic()))
                        if state.probe:
                            samples.append(state.probe.sample())
                    state.latency.rotate()
                    state.latency.measuring = False
                    open_now = sum(1 for c in state.clients if c.open)
                    state.memory_point(open_now, samples)
                    hold_rows = [
                        r for r in state.rows if r["step"] == step and r["phase"] == "hold"
                    ]
                    step_result = {
                        "connections": open_now,
                        "target": step,
                        "latency_ms": percentiles_ms(state.latency.total),
                        "samples": state.latency.total.get_total_count(),
                        # The merged histogram itself (HdrHistogram compressed, base64), so
                        # a report draws the spectrum without decoding the whole hlog.
                        "histogram": state.latency.total.encode().decode()
                        if state.latency.total.get_total_count()
                        else None,
                        "msgs_per_s": (state.received - received_before) / scenario.run.hold_s,
                        "sent_per_s": (state.sent - sent_before) / scenario.run.hold_s,
                        "server_cpu_pct": _mean([r["server_cpu_pct"] for r in hold_rows]),
                        "gen_cpu_pct": _mean([r["gen_cpu_pct"] for r in hold_rows]),
                        "gen_loop_lag_p99_ms": _max([r["gen_loop_lag_p99_ms"] for r in hold_rows]),
                        "warmup_s": round(warmup_took, 1),
                        "settled": settled,
                    }
                    msgs = step_result["msgs_per_s"] or 0
                    cpu = step_result["server_cpu_pct"]
                    step_result["server_cpu_s_per_1000_msgs"] = (
                        round(cpu / 100 / msgs * 1000, 4) if cpu is not None and msgs > 0 else None
                    )
                    result["steps"].append(step_result)
                    result["memory"] = _memory_fit(state.memory_points)
                    flush()
                    say(
                        f"{transport}: step {step}: {open_now} open, p50 {_ms(step_result['latency_ms']['p50'])}"
                        f", p99 {_ms(step_result['latency_ms']['p99'])}, {msgs:.0f} msgs/s"
                    )
                state._publishing = False
                state.phase = "drain"
                await state.drain(DRAIN_S, DRAIN_MAX_S)
            finally:
                state._publishing = False
                sampler.cancel()
                lag_task.cancel()
                if scenario.workload.kind in ("echo", "ws-echo"):
                    # One reply per send: what was sent and never came back is lost.
                    result["integrity"] = Integrity(
                        expected=state.sent,
                        delivered=min(state.received, state.sent),
                        lost=max(0, state.sent - state.received),
                        duplicated=max(0, state.received - state.sent),
                    ).as_dict()
                else:
                    integrity = Integrity()
                    for client in state.clients:
                        track = state.tracks.get(client.index)
                        final = state.final_ids.get(client.channel, 0)
                        if track is not None:
                            integrity.account(track, final)
                    result["integrity"] = integrity.as_dict()
                result["errors"] = dict(state.errors)
                result["connect_ms"] = {k: percentiles_ms(v) for k, v in state.connect_ms.items()}
                result["memory"] = _memory_fit(state.memory_points)
                result["generator"] = _generator_health(state)
                for task in list(state._tasks):
                    task.cancel()
                await asyncio.gather(*(c.close() for c in state.clients), return_exceptions=True)
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
    for key in ("rss", "uss", "kernel"):
        pairs = [(x, p[key]) for x, p in zip(xs, points, strict=True) if p[key] is not None]
        fit = fit_line([float(a) for a, _ in pairs], [float(b) for _, b in pairs])
        out[key] = (
            {"bytes_per_conn": round(fit[0]), "r2": round(fit[2], 4), "points": len(pairs)}
            if fit
            else {
                "bytes_per_conn": None,
                "r2": None,
                "points": len(pairs),
                "why": "fewer than two connection levels were measured",
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


def _generator_health(state: TransportRun) -> dict[str, Any]:
    hold = [r for r in state.rows if r["phase"] == "hold"]
    cpu = _max([r["gen_cpu_pct"] for r in hold])
    lag = (
        state.hold_lag.get_value_at_percentile(99) / 1000
        if state.hold_lag.get_total_count()
        else None
    )
    sched = (
        state.schedule_lag.get_value_at_percentile(99) / 1000
        if state.schedule_lag.get_total_count()
        else None
    )
    reasons = []
    if cpu is not None and cpu >= GENERATOR_CPU_LIMIT:
        reasons.append(f"generator CPU reached {cpu:.0f}% of a core")
    if lag is not None and lag > GENERATOR_LAG_LIMIT_MS:
        reasons.append(f"event-loop lag p99 reached {lag:.1f} ms")
    return {
        "cpu_pct_max": cpu,
        "loop_lag_p99_ms": lag,
        "schedule_lag_p99_ms": sched,
        "generator_bound": bool(reasons),
        "why": "; ".join(reasons) or None,
    }


async def run_scenario(scenario: Scenario, results_root: Path, say: Say) -> Path:
    preflight(scenario)
    out = ResultsWriter(results_root, scenario.name, scenario.as_dict())
    say(f"results: {out.dir}")
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
                    scenario, transport, out, say, result, lambda: out.summary(summary), repeat
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


def main_run(scenario: Scenario, results_root: Path, say: Say = print) -> Path:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(run_scenario(scenario, results_root, say))
