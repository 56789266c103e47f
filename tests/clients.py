"""Small test clients for the three transports, speaking the rtbench protocol."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import orjson

from loadgen.sse import SseDecoder
from servers.core.auth import user_secret
from servers.core.realm import generate_realm
from servers.runner import Running
from tests.conftest import UNIT

REALM_SECRET = generate_realm(seed=0, users=1).secret


async def token(http_url: str, user: str) -> str:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{http_url}/v1/auth/token",
            json={"user": user, "secret": user_secret(REALM_SECRET, user)},
        )
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


class Inbox:
    """Frames received by one client, with waiting helpers."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.event_ids: list[str | None] = []
        self._changed = asyncio.Event()
        self.closed = False

    def add(self, frame: dict[str, Any], event_id: str | None = None) -> None:
        self.frames.append(frame)
        self.event_ids.append(event_id)
        self._changed.set()

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("op") == op]

    async def wait_for(
        self, op: str, count: int = 1, timeout: float = 5 * UNIT
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.ops(op)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.ops(op)


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox = Inbox()
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.inbox.add(orjson.loads(message.data))
        self.close_code = self.ws.close_code
        self.inbox.closed = True
        self.inbox._changed.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(frame).decode())

    async def join(self, ch: str, since: int | None = None) -> dict[str, Any]:
        before = len(self.inbox.ops("joined"))
        frame: dict[str, Any] = {"op": "join", "ch": ch}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return (await self.inbox.wait_for("joined", before + 1))[-1]

    async def wait_closed(self, timeout: float = 5 * UNIT) -> int | None:
        async with asyncio.timeout(timeout):
            await self._reader
        return self.close_code


@asynccontextmanager
async def ws_client(server: Running, user: str, **kwargs: Any) -> AsyncIterator[WsClient]:
    assert server.http_url
    tok = await token(server.http_url, user)
    url = server.http_url.replace("http", "ws", 1) + f"/v1/ws?token={tok}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, **kwargs) as ws:
        client = WsClient(ws)
        await client.inbox.wait_for("hello")
        try:
            yield client
        finally:
            client._reader.cancel()


class SseClient:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.sid = ""
        self.decoder = SseDecoder()
        self.task: asyncio.Task[None] | None = None

    def feed(self, chunk: bytes) -> None:
        for event in self.decoder.feed(chunk):
            frame = orjson.loads(event.data)
            assert frame["op"] == event.event
            self.inbox.add(frame, event.id)


@asynccontextmanager
async def sse_client(
    server: Running,
    user: str,
    channels: str,
    *,
    h2: bool = False,
    last_event_id: str | None = None,
) -> AsyncIterator[SseClient]:
    """An SSE/1.1 (aiohttp) or SSE/2 (httpx, HTTP/2 over TLS) client."""
    assert server.http_url or server.h2_url
    base = server.h2_url if h2 else server.http_url
    assert base
    tok = (
        await token(server.http_url or base, user)
        if server.http_url
        else await _h2_token(server, user)
    )
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    client = SseClient()
    url = f"{base}/v1/sse"
    params = {"token": tok, "ch": channels}
    if h2:
        assert server.cert_path
        context = ssl.create_default_context(cafile=str(server.cert_path))
        async with (
            httpx.AsyncClient(http2=True, verify=context, timeout=None) as http,
            http.stream("GET", url, params=params, headers=headers) as response,
        ):
            assert response.status_code == 200, await response.aread()
            assert response.http_version == "HTTP/2"

            async def pump() -> None:
                async for chunk in response.aiter_raw():
                    client.feed(chunk)
                client.inbox.closed = True

            client.task = asyncio.create_task(pump())
            client.sid = (await client.inbox.wait_for("hello"))[0]["sid"]
            try:
                yield client
            finally:
                client.task.cancel()
    else:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, params=params, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()

            async def pump_h1() -> None:
                async for chunk in response.content.iter_any():
                    client.feed(chunk)
                client.inbox.closed = True
                client.inbox._changed.set()

            client.task = asyncio.create_task(pump_h1())
            client.sid = (await client.inbox.wait_for("hello"))[0]["sid"]
            try:
                yield client
            finally:
                client.task.cancel()


async def _h2_token(server: Running, user: str) -> str:
    assert server.h2_url and server.cert_path
    context = ssl.create_default_context(cafile=str(server.cert_path))
    async with httpx.AsyncClient(http2=True, verify=context) as http:
        response = await http.post(
            f"{server.h2_url}/v1/auth/token",
            json={"user": user, "secret": user_secret(REALM_SECRET, user)},
        )
        return str(response.json()["token"])


async def post(server: Running, path: str, payload: Any, **params: str) -> int:
    assert server.http_url
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.http_url}{path}", data=orjson.dumps(payload), params=params
        )
        return response.status
