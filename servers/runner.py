"""Run the reference servers: one process in-process (tests), or ``rtbench serve``.

Every process binds its own listening sockets with ``SO_REUSEPORT`` and the kernel
spreads connections over them; processes meet only through the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from servers.brokers import make_broker
from servers.config import ServerConfig
from servers.core.realm import Realm, generate_realm, load_realm
from servers.gcpolicy import freeze_survivors
from servers.hub import Hub
from servers.session import Transport
from servers.transports.aio import make_app
from servers.transports.asgi import SseApp

log = logging.getLogger("rtbench.server")


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def build_realm(config: ServerConfig) -> Realm:
    if config.realm_file:
        return load_realm(Path(config.realm_file))
    return generate_realm(seed=config.seed, users=config.users, daos=config.daos)


@dataclass(slots=True)
class Running:
    """One server process's listeners; ``http_url`` serves REST, WS and SSE/1.1."""

    hub: Hub
    http_url: str | None = None
    h2_url: str | None = None
    cert_path: Path | None = None
    _stoppers: list[Callable[[], Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_server(
    config: ServerConfig,
    transports: set[Transport],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    h2_port: int = 0,
    reuse_port: bool = False,
    node: str | None = None,
) -> AsyncIterator[Running]:
    """Serve in the current event loop until the block exits, then drain."""
    realm = build_realm(config)
    node = node or f"n{os.getpid()}-{secrets.token_hex(2)}"
    broker = make_broker(
        config.broker,
        node=node,
        history_count=config.history_count,
        history_age_ms=int(config.history_age_s * 1000),
        namespace=config.namespace,
    )
    hub = Hub(config, broker, realm, node=node)
    await hub.start()
    running = Running(hub)
    runner: web.AppRunner | None = None
    h2_task: asyncio.Task[None] | None = None
    h2_stop = asyncio.Event()
    try:
        wants_http = bool(transports & {Transport.WS, Transport.SSE}) or (
            Transport.SSE_H2 not in transports
        )
        if wants_http:
            app = make_app(hub, transports)
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
            )
            await runner.setup()
            sock = listen_socket(host, port, reuse_port=reuse_port)
            site = web.SockSite(runner, sock)
            await site.start()
            bound = sock.getsockname()[1]
            running.http_url = f"http://{_netloc(host, bound)}"
        if Transport.SSE_H2 in transports:
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            from servers.tls import ensure_certificate

            cert, key, _ = ensure_certificate()
            sock = listen_socket(host, h2_port, reuse_port=reuse_port)
            hconfig = Config()
            hconfig.bind = [f"fd://{sock.fileno()}"]
            hconfig.certfile, hconfig.keyfile = str(cert), str(key)
            hconfig.accesslog = None
            hconfig.errorlog = logging.getLogger("rtbench.hypercorn")
            hconfig.keep_alive_timeout = 3600
            hconfig.graceful_timeout = 2.0
            h2_task = asyncio.create_task(
                serve(SseApp(hub), hconfig, shutdown_trigger=h2_stop.wait)  # type: ignore[arg-type]
            )
            bound = sock.getsockname()[1]
            running.h2_url = f"https://{_netloc(host, bound)}"
            running.cert_path = cert
            await asyncio.sleep(0)
        yield running
    finally:
        await hub.stop()
        if h2_task is not None:
            asyncio.get_running_loop().set_exception_handler(_ignore_cancelled_streams)
        h2_stop.set()
        if h2_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(h2_task, 5.0)
        if runner is not None:
            await runner.cleanup()


def _ignore_cancelled_streams(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """At shutdown hypercorn cancels its connection tasks, and Python 3.11's stream callback
    re-raises each task's CancelledError into the loop's handler as a traceback (3.12 checks
    ``task.cancelled()`` first). Those are expected; anything else is still reported."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- rtbench serve --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """``rtbench serve``: ``ServeOptions(transports=(Transport.WS,), port=8080, processes=2)``."""

    transports: tuple[Transport, ...] = (Transport.WS, Transport.SSE, Transport.SSE_H2)
    host: str = "127.0.0.1"
    port: int = 8080
    h2_port: int | None = None
    """Defaults to ``port + 1``."""
    processes: int = 1
    broker: str | None = None
    """None: memory for one process, an embedded Valkey for several."""
    ready_file: str | None = None
    config: ServerConfig = field(default_factory=ServerConfig)


class ServeError(Exception):
    """``rtbench serve`` cannot start as asked; the message says what to change."""


DRAIN_S = 30.0
"""How long server processes get to close every connection before they are killed."""


def serve(options: ServeOptions, say: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM, then drain: WS close 1001, SSE streams end."""
    if options.processes < 1:
        raise ServeError(f"--processes must be at least 1, got {options.processes}")
    broker = options.broker
    valkey = None
    if broker == "memory" and options.processes > 1:
        raise ServeError(
            "the memory broker cannot join several processes: leave --broker out to start "
            "an embedded Valkey, or pass --broker redis://HOST:PORT/DB"
        )
    if broker is None:
        if options.processes == 1:
            broker = "memory"
        else:
            from servers.valkey import EmbeddedValkey

            valkey = EmbeddedValkey()
            valkey.start()
            broker = valkey.url
            pid = valkey.process.pid if valkey.process else "?"
            say(f"started an embedded Valkey on {broker} (pid {pid}) for this command")
    config = replace(options.config, broker=broker)
    options = replace(options, config=config, broker=broker)
    try:
        if options.processes == 1:
            _run_process(options, 0, None, say)
        else:
            _run_many(options, say)
    finally:
        if valkey is not None:
            valkey.stop()


def _run_many(options: ServeOptions, say: Callable[[str], None]) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(options, i, ready), name=f"rtbench-server-{i}")
        for i in range(options.processes)
    ]
    for child in children:
        child.start()
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    infos: list[dict[str, Any]] = []
    while len(infos) < len(children) and not stop:
        with contextlib.suppress(Exception):
            infos.append(ready.get(timeout=0.2))
        if any(c.exitcode not in (None, 0) for c in children):
            stop = True
    if infos:
        _announce(options, infos, say)
    while not stop and all(c.is_alive() for c in children):
        with contextlib.suppress(Exception):
            ready.get(timeout=0.5)
    for child in children:
        if child.pid is not None and child.is_alive():
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + DRAIN_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():  # did not drain in time: never leave a server behind
            child.kill()
            child.join(5)


def _child(options: ServeOptions, index: int, ready: Any) -> None:
    _run_process(options, index, ready, lambda line: None)


def _run_process(options: ServeOptions, index: int, ready: Any, say: Callable[[str], None]) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve_async(options, index, ready, say))


async def _serve_async(
    options: ServeOptions, index: int, ready: Any, say: Callable[[str], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    h2_port = options.h2_port if options.h2_port is not None else options.port + 1
    async with running_server(
        options.config,
        set(options.transports),
        host=options.host,
        port=options.port,
        h2_port=h2_port,
        reuse_port=options.processes > 1,
        node=f"n{index}-{secrets.token_hex(2)}",
    ) as running:
        info = {
            "pid": os.getpid(),
            "node": running.hub.node,
            "http": running.http_url,
            "h2": running.h2_url,
            "cert": str(running.cert_path) if running.cert_path else None,
            "broker": options.config.broker,
        }
        if ready is not None:
            ready.put(info)
        else:
            _announce(options, [info], say)
        freezer = None
        if options.config.gc_freeze_s > 0:
            freezer = asyncio.create_task(
                freeze_survivors(options.config.gc_freeze_s, lambda: len(running.hub.sessions))
            )
        await stop.wait()
        if freezer is not None:
            freezer.cancel()
        say("draining: WebSocket clients get close 1001, SSE streams end")


def _announce(
    options: ServeOptions, infos: list[dict[str, Any]], say: Callable[[str], None]
) -> None:
    first = infos[0]
    transports = set(options.transports)
    if first["http"]:
        if Transport.WS in transports:
            say(f"WebSocket   {first['http'].replace('http', 'ws', 1)}/v1/ws?token=TOKEN")
        if Transport.SSE in transports:
            say(f"SSE/1.1     {first['http']}/v1/sse?token=TOKEN&ch=dao:1:general")
        say(f"tokens      POST {first['http']}/v1/auth/token")
        say(f"metrics     {first['http']}/metrics")
    if first["h2"]:
        say(f"SSE/2 (TLS) {first['h2']}/v1/sse?token=TOKEN&ch=dao:1:general")
        say(f"certificate {first['cert']} (self-signed; trust it in your client)")
    broker = options.config.broker
    pids = ", ".join(str(i["pid"]) for i in infos)
    say(f"broker      {broker}, {len(infos)} process(es): pids {pids}")
    say("ready; Ctrl-C to stop")
    sys.stdout.flush()
    if options.ready_file:
        Path(options.ready_file).write_bytes(
            orjson.dumps({"processes": infos, "transports": [t.value for t in options.transports]})
        )
