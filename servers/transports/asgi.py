"""ASGI application for SSE over HTTP/2 (served by hypercorn with TLS).

The same endpoints as the aiohttp app but the WebSocket one, over the same hub. A
stream ends when the client's ``http.disconnect`` arrives, watched by a second task,
since an idle stream never writes and would not notice otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from servers.hub import Hub
from servers.session import CLOSE_GOING_AWAY, Transport
from servers.transports import rest
from servers.transports.aio import sse_close_event

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]
_CLIENT_POSTS = {"/v1/presence/heartbeat": "hb", "/v1/echo": "echo"}
_CHANNEL_PREFIX, _CHANNEL_SUFFIX = "/v1/channels/", "/messages"


class SseApp:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        hub = self.hub
        if method == "GET" and path == "/v1/sse":
            await self._sse(query, headers, receive, send)
            return
        if method == "GET" and path == "/metrics":
            await _reply(send, rest.metrics(hub))
            return
        if method != "POST":
            await _reply(send, rest.Reply(404, b'{"error":"not found"}'))
            return
        body = await _body(receive, hub.config.limits.max_message_bytes)
        if body is None:
            await _reply(send, rest.Reply(413, b'{"error":"body too large"}'))
        elif path == "/v1/auth/token":
            await _reply(send, rest.token(hub, body))
        elif path == "/v1/admin/balances":
            await _reply(send, await rest.set_balance(hub, headers.get("x-admin-key"), body))
        elif path in _CLIENT_POSTS:
            kind = _CLIENT_POSTS[path]
            await _reply(send, await rest.client_post(hub, kind, query.get("sid"), body))
        elif path.startswith(_CHANNEL_PREFIX) and path.endswith(_CHANNEL_SUFFIX):
            ch = path[len(_CHANNEL_PREFIX) : -len(_CHANNEL_SUFFIX)]
            await _reply(send, await rest.client_post(hub, "pub", query.get("sid"), body, ch))
        else:
            await _reply(send, rest.Reply(404, b'{"error":"not found"}'))

    async def _sse(
        self, query: dict[str, str], headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        hub = self.hub
        try:
            session = rest.open_sse(
                hub,
                Transport.SSE_H2,
                token=query.get("token"),
                channels=query.get("ch"),
                last_event_id=headers.get("last-event-id") or query.get("lastEventId"),
                origin=headers.get("origin"),
            )
        except rest.Refusal as exc:
            await _reply(send, exc.reply())
            return

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            session.end(CLOSE_GOING_AWAY, "client went away", flush=False)

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            while frames := await session.frames():
                await send(
                    {"type": "http.response.body", "body": b"".join(frames), "more_body": True}
                )
            last = b"" if session.close_code == CLOSE_GOING_AWAY else sse_close_event(session)
            await send({"type": "http.response.body", "body": last, "more_body": False})
        except (ConnectionError, OSError):
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await hub.close(session)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send: Send, reply: rest.Reply) -> None:
    headers = [(b"content-type", reply.content_type.encode())] if reply.body else []
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
