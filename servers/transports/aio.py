"""aiohttp application: REST, WebSocket (RFC 6455) and SSE over HTTP/1.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from servers.core import protocol
from servers.core.errors import AuthError
from servers.hub import Hub
from servers.session import CLOSE_GOING_AWAY, Session, Transport
from servers.transports import rest

HUB = web.AppKey("hub", Hub)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _respond(reply: rest.Reply) -> web.Response:
    return web.Response(
        status=reply.status,
        body=reply.body,
        content_type=None,
        headers={"Content-Type": reply.content_type} if reply.body else None,
    )


async def token(request: web.Request) -> web.StreamResponse:
    return _respond(rest.token(request.app[HUB], await request.read()))


async def set_balance(request: web.Request) -> web.StreamResponse:
    key = request.headers.get("X-Admin-Key")
    return _respond(await rest.set_balance(request.app[HUB], key, await request.read()))


def _client_post(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        reply = await rest.client_post(
            request.app[HUB],
            kind,
            request.query.get("sid"),
            await request.read(),
            request.match_info.get("ch"),
        )
        return _respond(reply)

    return handler


async def metrics(request: web.Request) -> web.StreamResponse:
    return _respond(rest.metrics(request.app[HUB]))


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    try:
        rest.check_origin(hub, request.headers.get("Origin"))
        user = hub.authenticate(request.query.get("token"))
    except rest.Refusal as exc:
        return _respond(exc.reply())
    except AuthError as exc:
        return _respond(rest.Refusal(exc.status, exc.reason).reply())
    if hub.draining:
        return _respond(rest.Refusal(503, "server shutting down").reply())
    limits = hub.config.limits
    # Compression stays off: permessage-deflate costs ~48 KB per connection on each
    # side (../shared/ANCHORS.md) and is not what a transport comparison measures.
    ws = web.WebSocketResponse(max_msg_size=limits.max_message_bytes, compress=False)
    try:
        async with asyncio.timeout(limits.handshake_timeout_s):
            await ws.prepare(request)
    except TimeoutError:
        return ws
    session = hub.open(user, Transport.WS)
    writer = asyncio.create_task(_pump_ws(ws, session))
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                await hub.receive(session, message.data)
    finally:
        session.end(session.close_code, session.close_reason)
        await hub.close(session)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await asyncio.wait_for(writer, 5.0)
    return ws


async def _pump_ws(ws: web.WebSocketResponse, session: Session) -> None:
    send, text = ws.send_frame, WSMsgType.TEXT
    try:
        while frames := await session.frames():
            for frame in frames:
                await send(frame, text)
    except ConnectionError:
        return
    if not ws.closed:
        await ws.close(code=session.close_code, message=session.close_reason.encode()[:120])


async def sse(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    try:
        session = rest.open_sse(
            hub,
            Transport.SSE,
            token=request.query.get("token"),
            channels=request.query.get("ch"),
            last_event_id=request.headers.get("Last-Event-ID") or request.query.get("lastEventId"),
            origin=request.headers.get("Origin"),
        )
    except rest.Refusal as exc:
        return _respond(exc.reply())
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        async with asyncio.timeout(hub.config.limits.handshake_timeout_s):
            await response.prepare(request)
        while frames := await session.frames():
            await response.write(b"".join(frames))
        if session.close_code != CLOSE_GOING_AWAY:
            await response.write(sse_close_event(session))
    except (ConnectionError, TimeoutError):
        pass
    finally:
        await hub.close(session)
    return response


def sse_close_event(session: Session) -> bytes:
    reason = session.close_reason or "closed"
    return protocol.sse_event("error", protocol.error(str(session.close_code), reason))


def make_app(hub: Hub, transports: set[Transport]) -> web.Application:
    """The aiohttp app; routes for transports not in ``transports`` are left out."""
    app = web.Application(client_max_size=hub.config.limits.max_message_bytes)
    app[HUB] = hub
    app.router.add_post("/v1/auth/token", token)
    app.router.add_post("/v1/admin/balances", set_balance)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    if Transport.WS in transports:
        app.router.add_get("/v1/ws", websocket)
    if Transport.SSE in transports:
        app.router.add_get("/v1/sse", sse)
        app.router.add_post("/v1/channels/{ch}/messages", _client_post("pub"))
        app.router.add_post("/v1/presence/heartbeat", _client_post("hb"))
        app.router.add_post("/v1/echo", _client_post("echo"))
    return app
