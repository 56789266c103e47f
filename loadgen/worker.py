"""A generator worker: one process that opens its share of the connections, drives the
open-loop workload on them and records what it sees.

The coordinator (``loadgen.engine``) talks to it only through the control channel
(``loadgen.control``): a plan in, then ``ramp``/``phase``/``tick``/``final`` commands, each
answered with counters and HDR histograms (compressed, base64). Channel ``k`` (connections
``k*S .. k*S+S-1``) lives wholly in worker ``k % W``, so its publisher and all its
subscribers share a process and delivery integrity is accounted where it is observed.

    python -m loadgen.worker     # reads JSON lines on stdin, answers on stdout
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import signal
import ssl
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import aiohttp
import orjson
import psutil

from loadgen.chat import Community
from loadgen.clients import (
    Client,
    ConnectError,
    PlainSseClient,
    PlainWsClient,
    Sse2Client,
    SseClient,
    WsClient,
)
from loadgen.h2conn import h2_context
from loadgen.net import socket_factory
from loadgen.scenario import Scenario, scenario_from_dict
from loadgen.schedule import Schedule
from loadgen.stats import ChannelTrack, Integrity, IntervalRecorder, new_histogram
from servers.core import protocol

CONNECT_TIMEOUT_S = 10.0
LAG_TICK_S = 0.01
SYNC, INLINE, TASK = 0, 1, 2
"""How the sender calls a send: a plain call with the intended time (picows), awaited in
line (aiohttp WebSocket), or as a task of its own (HTTP POSTs)."""
Send = tuple[int, "Client", "Callable[[Any], Any]", int]
PLAIN_KINDS = ("ws-echo", "sse-plain")
CONNECT_PHASES = ("tcp_tls", "token", "upgrade", "join")


def channel_for(index: int, channel_size: int) -> str:
    k = index // channel_size
    return f"dao:{k % 10 + 1}:topic-{(k // 10) % 100}"


def owner(index: int, channel_size: int, workers: int, kind: str = "fanout") -> int:
    """The worker that holds connection ``index``: whole channels per worker (in ``chat``
    users span rooms, so users are dealt round-robin and acks are merged at the end)."""
    if kind == "chat":
        return index % workers
    return (index // channel_size) % workers


class Worker:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.scenario: Scenario = scenario_from_dict(plan["scenario"])
        self.transport: str = plan["transport"]
        self.worker: int = plan["worker"]
        self.workers: int = plan["workers"]
        self.http_url: str | None = plan.get("http_url")
        self.h2_url: str | None = plan.get("h2_url")
        self.source_ip: str | None = plan.get("source_ip")
        self.tls: ssl.SSLContext | None = (
            h2_context(plan.get("cert")) if self.transport == "sse-h2" else None
        )
        self.clients: list[Client] = []
        self.latency = IntervalRecorder()
        self.connect_ms = {name: new_histogram() for name in CONNECT_PHASES}
        self.errors: dict[str, int] = {}
        self.received = 0
        self.sent = 0
        self.tracks: dict[tuple[int, str], ChannelTrack] = {}
        """What each connection saw of each channel it joined, by (index, channel)."""
        self.final_ids: dict[str, int] = {}
        self.lag = new_histogram()
        self.hold_lag = new_histogram()
        self.schedule_lag = IntervalRecorder()
        """How late each send left, µs; folded into ``schedule_total`` every tick."""
        self.schedule_total = new_histogram()
        self.phase = "ramp"
        self.publishing = True
        self.next_index = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last = (0, 0)
        self._me = psutil.Process()
        self._me.cpu_percent()
        self.http: aiohttp.ClientSession | None = None
        w = self.scenario.workload
        self.community = (
            Community.build(
                w.rooms, w.zipf_s, w.rooms_per_user, w.gated_share, self.scenario.run.seed
            )
            if w.kind == "chat"
            else None
        )
        self._rng = random.Random(self.scenario.run.seed * 7919 + self.worker)
        self.churn_moves = 0
        self._due: Schedule[Send] = Schedule()
        """Open-loop sends: (period ns, client, send, how) at their intended times."""
        self._wake = asyncio.Event()
        self.refused_joins = 0

    async def _chat_publish(self, client: Client, body: Any) -> None:
        """A user speaks in one of the rooms it is in, picked at random."""
        rooms = [c for c in client.channels if c not in client.refused]
        if rooms:
            await client.publish(body, ch=self._rng.choice(rooms))

    async def _churn(self, per_s: float) -> None:
        """Users move between rooms: WebSocket leaves one and joins another on the same
        connection; SSE, whose rooms are fixed per stream, reconnects with the new list."""
        assert self.community is not None
        period = 1.0 / per_s
        while True:
            await asyncio.sleep(period)
            candidates = [c for c in self.clients if c.open and len(c.channels) > 1]
            if not candidates:
                continue
            client = self._rng.choice(candidates)
            leave = self._rng.choice(client.channels[1:])
            join = self.community.pick(self._rng, set(client.channels))
            if join is None:
                continue
            self.tracks.pop((client.index, leave), None)
            self.churn_moves += 1
            if isinstance(client, WsClient):
                with contextlib.suppress(Exception):
                    await client.move(leave, join)
                continue
            for ch in client.channels:
                self.tracks.pop((client.index, ch), None)
            rooms = [c for c in client.channels if c != leave] + [join]
            await client.reset(None)
            client.channels = rooms
            try:
                await self._connect(client)
            except Exception as exc:  # counted; the client stays closed
                self._count(
                    f"churn:{exc.kind if isinstance(exc, ConnectError) else type(exc).__name__}"
                )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            socket_factory=socket_factory(self.source_ip) if self.source_ip else None,
        )
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )
        self._spawn(self._loop_lag())
        self._spawn(self._sender())
        w = self.scenario.workload
        if self.community is not None and w.churn_per_s > 0:
            self._spawn(self._churn(w.churn_per_s / self.workers))

    # -- frames --------------------------------------------------------------------

    def on_frame(self, client: Client, frame: dict[str, Any], received_ns: int) -> None:
        op = frame.get("op")
        if op == "msg":
            self.received += 1
            body = frame.get("body")
            if isinstance(body, dict) and "t" in body:
                self.latency.record((received_ns - int(body["t"])) // 1000)
            track = self.tracks.get((client.index, str(frame.get("ch"))))
            if track is not None:
                track.observe(int(frame["id"]))
        elif op == "echo":
            self.on_echo(frame.get("body"), received_ns)
        elif op == "plain":
            self.received += 1
            if frame["us"] is not None:
                self.latency.record(frame["us"])
            else:
                self._count("event_without_time")
        elif op == "joined":
            # Track from the join itself: messages can follow in the same read, before the
            # connect coroutine resumes. A resumed join keeps its track: what the gap cost
            # is what integrity is about.
            key = (client.index, str(frame.get("ch")))
            if key not in self.tracks or client.since is None:
                self.tracks[key] = ChannelTrack(int(frame.get("last", 0)))
        elif op == "ack":
            cid = frame.get("cid")
            ch = cid if isinstance(cid, str) else client.channel
            self.final_ids[ch] = max(self.final_ids.get(ch, 0), int(frame["id"]))
        elif op == "error":
            if frame.get("code") == "forbidden" and self.community is not None:
                return  # a gated room refused: expected in chat, counted as refused_joins
            self._count(f"error:{frame.get('code')}")

    def on_echo(self, body: Any, received_ns: int) -> None:
        """A reply to an echo: latency from the ``t`` it carries back."""
        self.received += 1
        try:
            self.latency.record((received_ns - int(body["t"])) // 1000)
        except (TypeError, KeyError, ValueError):
            self._count("echo_unrecognised")

    def _count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- connections ---------------------------------------------------------------

    def _make_client(self, index: int) -> Client:
        w = self.scenario.workload
        if self.community is not None:
            primary, *extra = self.community.rooms_of(index)
            args: tuple[Any, ...] = (index, f"u{index}", primary, self.on_frame, tuple(extra))
        else:
            args = (index, f"u{index}", channel_for(index, w.channel_size), self.on_frame)
        assert self.http is not None
        if w.kind == "ws-echo":
            assert self.http_url
            return PlainWsClient(
                *args, ws_url=self.http_url, on_echo=self.on_echo, source_ip=self.source_ip
            )
        if w.kind == "sse-plain":
            assert self.http_url
            return PlainSseClient(*args, http=self.http, url=self.http_url, time_field=w.time_field)
        if self.transport == "ws":
            assert self.http_url
            ws_url = self.http_url.replace("http", "ws", 1) + "/v1/ws"
            return WsClient(*args, http=self.http, ws_url=ws_url)
        if self.transport == "sse":
            assert self.http_url
            return SseClient(*args, http=self.http, base_url=self.http_url)
        assert self.h2_url and self.tls is not None
        return Sse2Client(*args, base_url=self.h2_url, tls=self.tls, source_ip=self.source_ip)

    async def _token(self, client: Client) -> str:
        started = time.perf_counter()
        secret = protocol.user_secret(
            protocol.generated_realm_secret(self.scenario.target.realm_seed), client.user
        )
        body = orjson.dumps({"user": client.user, "secret": secret})
        if isinstance(client, Sse2Client):
            status, data = await client.request("/v1/auth/token", body)
        else:
            assert self.http is not None
            async with self.http.post(f"{self.http_url}/v1/auth/token", data=body) as r:
                status, data = r.status, await r.read()
        if status != 200:
            raise ConnectError(f"token_http_{status}")
        self.connect_ms["token"].record_value(max(1, int((time.perf_counter() - started) * 1e6)))
        return str(orjson.loads(data)["token"])

    async def _connect(self, client: Client) -> None:
        if isinstance(client, Sse2Client):
            await client.prepare(CONNECT_TIMEOUT_S)
        plain = self.scenario.workload.kind in PLAIN_KINDS
        token = "" if plain else await self._token(client)
        await client.connect(token, CONNECT_TIMEOUT_S)

    async def _open(self, client: Client) -> None:
        try:
            await self._connect(client)
        except ConnectError as exc:
            self._count(exc.kind)
            await client.close()
            return
        except Exception as exc:  # anything else a connect can raise is counted, not fatal
            self._count(type(exc).__name__)
            await client.close()
            return
        for name in ("tcp_tls", "upgrade", "join"):
            value = client.phases.get(f"{name}_ms")
            if value is not None:
                self.connect_ms[name].record_value(max(1, int(value * 1000)))
        self.refused_joins += len(client.refused)
        self.clients.append(client)
        self._start_workload(client)

    async def ramp_to(self, total: int) -> int:
        """Open this worker's share of connections ``0 .. total-1`` at its share of the rate."""
        w = self.scenario.workload
        mine = [
            i
            for i in range(self.next_index, total)
            if owner(i, w.channel_size, self.workers, w.kind) == self.worker
        ]
        self.next_index = max(self.next_index, total)
        rate = self.scenario.run.ramp_rate / self.workers
        # Connects in flight are bounded across all workers, as the ramp rate is: a server
        # slower to accept than the ramp sees a queue of this size, not of everything.
        semaphore = asyncio.Semaphore(self._connect_slots())
        began = time.monotonic()

        async def one(i: int) -> None:
            async with semaphore:
                await self._open(self._make_client(i))

        tasks = []
        for n, index in enumerate(mine):
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
            if n % 1000 == 999:
                # Connections opened so far stay: keep the collector from re-walking them
                # on every full pass while the ramp goes on (seconds-long stalls at 20,000).
                gc.freeze()
        await asyncio.gather(*tasks)
        # What is open now lives until the end: keep it out of the cyclic collector's walk,
        # whose full passes stall the loop for tens of ms at a few thousand connections.
        gc.collect()
        gc.freeze()
        return self.open_count()

    async def storm(self, fraction: float) -> dict[str, Any]:
        """Cut ``fraction`` of the subscribers at once (no closing handshake), reconnect
        each at once resuming after the last message it saw, and time drop -> joined."""
        w = self.scenario.workload
        victims = [
            c for c in self.clients if c.open and c.index % w.channel_size != 0
        ]  # publishers keep publishing through the storm
        victims = victims[: round(len(victims) * fraction)]
        resume = new_histogram()
        failed: dict[str, int] = {}
        semaphore = asyncio.Semaphore(self._connect_slots())

        async def one(client: Client) -> None:
            dropped = time.perf_counter()
            client.drop()
            track = self.tracks.get((client.index, client.channel))
            await client.reset(track.highest or track.start if track else None)
            async with semaphore:
                try:
                    await self._connect(client)
                except Exception as exc:  # counted, the storm goes on
                    kind = exc.kind if isinstance(exc, ConnectError) else type(exc).__name__
                    failed[kind] = failed.get(kind, 0) + 1
                    self._count(f"resume:{kind}")
                    return
            resume.record_value(max(1, int((time.perf_counter() - dropped) * 1e6)))
            if w.heartbeat_s:
                self._spawn(self._heartbeats(client, w.heartbeat_s))

        await asyncio.gather(*(one(c) for c in victims))
        return {
            "op": "stormed",
            "dropped": len(victims),
            "resumed": resume.get_total_count(),
            "failed": failed,
            "resume": _encode(resume),
        }

    def _connect_slots(self) -> int:
        """This worker's share of the connects allowed in flight at once."""
        return max(1, self.scenario.run.connect_concurrency // self.workers)

    def open_count(self) -> int:
        return sum(1 for c in self.clients if c.open)

    # -- workload ------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_workload(self, client: Client) -> None:
        w = self.scenario.workload
        if w.kind in ("fanout", "reconnect-storm") and client.index % w.channel_size == 0:
            self._schedule(client, w.rate, client.publish)
        elif w.kind == "chat":
            self._schedule(client, w.rate, partial(self._chat_publish, client))
        elif isinstance(client, PlainWsClient):
            client.padding = w.payload_bytes
            self._schedule(client, w.rate, client.send_echo, how=SYNC)
        elif w.kind == "echo":
            self._schedule(client, w.rate, client.echo)
        if w.heartbeat_s and w.kind not in PLAIN_KINDS:
            self._spawn(self._heartbeats(client, w.heartbeat_s))

    def _schedule(
        self, client: Client, rate: float, send: Callable[[Any], Any], how: int | None = None
    ) -> None:
        """Open loop: add ``client`` to the worker's send schedule at ``rate``/s. The first
        send is spread over one period so senders do not fire in lockstep."""
        if how is None:
            # aiohttp's WebSocket send writes at once and returns: awaited in line. An HTTP
            # POST waits for its answer: a task of its own, so no send waits for another.
            how = INLINE if isinstance(client, WsClient) else TASK
        period_ns = int(1e9 / rate)
        first = time.monotonic_ns() + (client.index * 7919 % 1000) * period_ns // 1000
        self._due.add(first, (period_ns, client, send, how))
        self._wake.set()

    async def _sender(self) -> None:
        """Every open-loop send of this worker, from one timer: sends happen at their
        intended times whatever the replies do, and a late send keeps its intended time so
        the delay counts as latency (one task per sender would cost a task switch and a
        timer per message)."""
        due = self._due
        pad = "x" * self.scenario.workload.payload_bytes
        sending: set[asyncio.Task[Any]] = set()
        record_lag = self.schedule_lag.record
        while True:
            next_ns = due.next_ns()
            if next_ns is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay_ns = next_ns - time.monotonic_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
            now = time.monotonic_ns()
            for intended, entry in due.due(now):
                if not self.publishing:
                    continue
                period_ns, client, send, how = entry
                due.add(intended + period_ns, entry)
                if not client.open:
                    continue  # reconnecting (churn, storm): keeps its cadence, sends nothing
                record_lag((now - intended) // 1000)
                self.sent += 1
                if how == SYNC:
                    send(intended)
                elif how == INLINE:
                    await send({"t": intended, "p": pad})
                else:
                    task = asyncio.create_task(send({"t": intended, "p": pad}))
                    sending.add(task)
                    task.add_done_callback(sending.discard)

    async def _heartbeats(self, client: Client, every_s: float) -> None:
        while client.open:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await client.heartbeat()

    async def _loop_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            value = max(1, int((time.monotonic() - before - LAG_TICK_S) * 1e6))
            self.lag.record_value(value)
            if self.phase == "hold":
                self.hold_lag.record_value(value)

    # -- reports -------------------------------------------------------------------

    def set_phase(self, phase: str, publishing: bool) -> None:
        self.phase = phase
        self.publishing = publishing

    def _schedule_lag_so_far(self) -> Any:
        self.schedule_total.add(self.schedule_lag.rotate())
        return self.schedule_total

    def snapshot(self) -> dict[str, Any]:
        self._schedule_lag_so_far()
        interval = self.latency.rotate()
        lag, self.lag = self.lag, new_histogram()
        received, sent = self.received, self.sent
        out = {
            "op": "snapshot",
            "connections": self.open_count(),
            "received": received - self._last[0],
            "sent": sent - self._last[1],
            "latency": _encode(interval),
            "lag": _encode(lag),
            "cpu_pct": self._me.cpu_percent(),
            "rss": self._me.memory_info().rss,
            "errors": dict(self.errors),
        }
        self._last = (received, sent)
        return out

    async def final(self, final_ids: dict[str, int] | None = None) -> dict[str, Any]:
        """Integrity against ``final_ids`` (every worker's acks merged: in ``chat`` a channel's
        publishers are spread over workers), else this worker's own."""
        self.publishing = False
        kind = self.scenario.workload.kind
        if kind in ("echo", "ws-echo"):
            # One reply per send: what was sent and never came back is lost.
            integrity = Integrity(
                expected=self.sent,
                delivered=min(self.received, self.sent),
                lost=max(0, self.sent - self.received),
                duplicated=max(0, self.received - self.sent),
            )
        else:
            integrity = Integrity()
            finals = final_ids if final_ids is not None else self.final_ids
            for (_index, ch), track in self.tracks.items():
                integrity.account(track, finals.get(ch, 0))
        out = {
            "op": "final",
            "integrity": integrity.as_dict(),
            "errors": dict(self.errors),
            "connect_ms": {k: _encode(v) for k, v in self.connect_ms.items()},
            "hold_lag": _encode(self.hold_lag),
            "schedule_lag": _encode(self._schedule_lag_so_far()),
            "churn_moves": self.churn_moves,
            "refused_joins": self.refused_joins,
        }
        return out

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        if self.http is not None:
            await self.http.close()


def _encode(histogram: Any) -> str | None:
    if histogram.get_total_count() == 0:
        return None
    encoded: bytes = histogram.encode()
    return encoded.decode()


async def serve(reader: asyncio.StreamReader, write: Callable[[dict[str, Any]], None]) -> None:
    """The worker's side of the control channel: one command per line, each answered with
    its ``id``. A ramp runs for seconds while ticks go on being answered, so every command
    runs as its own task."""
    worker: Worker | None = None
    running: set[asyncio.Task[None]] = set()
    finished = asyncio.Event()

    async def handle(command: dict[str, Any]) -> None:
        nonlocal worker
        op = command["op"]
        if op == "plan":
            worker = Worker(command)
            await worker.start()
            answer: dict[str, Any] = {"op": "ready", "pid": os.getpid()}
        elif worker is None:
            answer = {"op": "error", "error": "plan must come first"}
        elif op == "ramp":
            answer = {"op": "ramped", "open": await worker.ramp_to(int(command["total"]))}
        elif op == "phase":
            worker.set_phase(command["phase"], bool(command["publishing"]))
            answer = {"op": "ok"}
        elif op == "storm":
            answer = await worker.storm(float(command["fraction"]))
        elif op == "tick":
            answer = worker.snapshot()
        elif op == "acks":
            worker.publishing = False
            answer = {"op": "acks", "final_ids": worker.final_ids}
        elif op == "final":
            # Whatever is still running (a ramp cut short by Ctrl-C) stops here.
            for task in list(running):
                if task is not asyncio.current_task():
                    task.cancel()
            answer = await worker.final(command.get("final_ids"))
            finished.set()
        else:
            answer = {"op": "error", "error": f"unknown op {op!r}"}
        write({**answer, "id": command.get("id")})

    try:
        while not finished.is_set():
            line = await reader.readline()
            if not line:
                break
            task = asyncio.create_task(handle(orjson.loads(line)))
            running.add(task)
            task.add_done_callback(running.discard)
            if orjson.loads(line)["op"] == "final":
                await task
    finally:
        for task in list(running):
            task.cancel()
        if worker is not None:
            await worker.close()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def write(message: dict[str, Any]) -> None:
        out.write(orjson.dumps(message) + b"\n")
        out.flush()

    await serve(reader, write)


def main() -> None:
    # Ctrl-C reaches the whole process group: the coordinator decides how to stop, and
    # closes our stdin when it goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
