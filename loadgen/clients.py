"""Transport clients: WebSocket (aiohttp), SSE/1.1 (aiohttp), SSE/2 (h2 on asyncio).

Each client opens one connection for one simulated user, timing the phases of the
connect (token REST call, TCP/TLS + upgrade or first byte, join acknowledgement), and
hands every decoded frame to ``on_frame(client, frame, received_ns)``.

Library choice, by measurement (../shared/ANCHORS.md): aiohttp for WS and SSE/1.1 (about
10.7 KB per idle client connection, fast to open); for SSE/2 the ``h2`` state machine on an
asyncio protocol (``loadgen.h2conn``), because httpx saturated one generator process past
about 2,000 streams (measured on this machine; README, "Client libraries").
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from loadgen import h2conn
from loadgen.net import bound_socket
from loadgen.sse import SseDecoder
from servers.core import protocol

READ_BUFFER_BYTES = 1024
"""picows's initial read buffer per connection; it grows when a larger frame arrives."""

OnFrame = Callable[["Client", dict[str, Any], int], None]


class ConnectError(Exception):
    """A connection failed; ``kind`` is what the live view and summary count by."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Client:
    transport = ""

    def __init__(
        self,
        index: int,
        user: str,
        channel: str,
        on_frame: OnFrame,
        extra_channels: tuple[str, ...] = (),
    ) -> None:
        self.index = index
        self.user = user
        self.channel = channel
        """The primary channel: the one published to and resumed by default."""
        self.channels = [channel, *(c for c in extra_channels if c != channel)]
        self.refused: set[str] = set()
        """Channels whose join the server refused (gated rooms)."""
        self._awaiting: set[str] = set()
        self.on_frame = on_frame
        self.phases: dict[str, float] = {}
        self.sid = ""
        self.joined_last = 0
        self.open = False
        self.close_code: int | None = None
        self._joined = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def _frame(self, frame: dict[str, Any], received_ns: int) -> None:
        op = frame.get("op")
        if op == "joined":
            ch = frame.get("ch")
            if ch == self.channel:
                self.joined_last = int(frame.get("last", 0))
            self._answered(str(ch))
        elif op == "error" and frame.get("code") == "forbidden":
            ch = str(frame.get("reason", "")).split(": ", 1)[0]
            if ch in self._awaiting:
                self.refused.add(ch)
                self._answered(ch)
        elif op == "hello":
            self.sid = str(frame.get("sid", ""))
        self.on_frame(self, frame, received_ns)

    def _answered(self, ch: str) -> None:
        self._awaiting.discard(ch)
        if not self._awaiting:
            self._joined.set()

    def _expect_joins(self, channels: list[str]) -> None:
        self._awaiting = set(channels)
        self._joined = asyncio.Event()

    async def _wait_joined(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._joined.wait()
        except TimeoutError:
            raise ConnectError("join_timeout") from None
        if self.channel in self.refused:
            raise ConnectError("join_forbidden")

    since: int | None = None
    """Resume point for the next connect: the last message id seen on the channel."""

    async def connect(self, token: str, timeout: float) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        """Cut the connection without a closing handshake, as a network failure would."""
        raise NotImplementedError

    async def reset(self, since: int | None) -> None:
        """Forget the old connection; the next connect resumes the channel after ``since``."""
        await self.close()
        self.open = False
        self._joined = asyncio.Event()
        self.since = since
        self.phases = {}

    async def publish(self, body: Any, ch: str | None = None) -> None:
        raise NotImplementedError

    async def echo(self, body: Any) -> None:
        raise NotImplementedError

    async def heartbeat(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class WsClient(Client):
    transport = "ws"

    def __init__(self, *args: Any, http: aiohttp.ClientSession, ws_url: str) -> None:
        super().__init__(*args)
        self.http = http
        self.ws_url = ws_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, token: str, timeout: float) -> None:
        started = time.perf_counter()
        try:
            self.ws = await self.http.ws_connect(
                f"{self.ws_url}?token={token}",
                autoping=True,
                compress=0,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise ConnectError(f"http_{exc.status}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectError(
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            ) from None
        self.phases["upgrade_ms"] = (time.perf_counter() - started) * 1000
        self.open = True
        self._reader = asyncio.create_task(self._read())
        started = time.perf_counter()
        self._expect_joins(self.channels)
        for ch in self.channels:
            since = self.since if ch == self.channel else None
            await self.ws.send_bytes(protocol.encode_join(ch, since))
        await self._wait_joined(timeout)
        self.phases["join_ms"] = (time.perf_counter() - started) * 1000

    async def _read(self) -> None:
        assert self.ws is not None
        loads, frame, now = orjson.loads, self._frame, time.monotonic_ns
        try:
            async for message in self.ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    frame(loads(message.data), now())
        finally:
            self.open = False
            self.close_code = self.ws.close_code

    async def publish(self, body: Any, ch: str | None = None) -> None:
        if self.ws is not None and not self.ws.closed:
            ch = ch or self.channel
            await self.ws.send_bytes(protocol.encode_pub(ch, body, cid=ch))

    async def move(self, leave: str, join: str) -> None:
        """Churn: leave one room and join another on the same connection."""
        if self.ws is None or self.ws.closed:
            return
        self.channels = [c for c in self.channels if c != leave] + [join]
        await self.ws.send_bytes(protocol.encode_leave(leave))
        await self.ws.send_bytes(protocol.encode_join(join))

    async def echo(self, body: Any) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_bytes(protocol.encode_echo(body))

    async def heartbeat(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_bytes(protocol.HEARTBEAT_FRAME)

    def drop(self) -> None:
        connection = getattr(self.ws, "_conn", None)
        transport = connection.transport if connection is not None else None
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2.0)
        if self._reader is not None:
            self._reader.cancel()


class _SseBase(Client):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.decoder = SseDecoder()

    async def reset(self, since: int | None) -> None:
        await super().reset(since)
        self.decoder = SseDecoder()

    async def _post(self, path: str, body: bytes) -> None:
        """Client -> server over HTTP, with the stream's ``sid``; answers come on the stream."""
        raise NotImplementedError

    async def publish(self, body: Any, ch: str | None = None) -> None:
        ch = ch or self.channel
        await self._post(f"/v1/channels/{ch}/messages", orjson.dumps({"body": body, "cid": ch}))

    async def echo(self, body: Any) -> None:
        await self._post("/v1/echo", orjson.dumps({"body": body}))

    async def heartbeat(self) -> None:
        await self._post("/v1/presence/heartbeat", b"{}")

    def _feed(self, chunk: bytes) -> None:
        now = time.monotonic_ns()
        for event in self.decoder.feed(chunk):
            self._frame(orjson.loads(event.data), now)


class SseClient(_SseBase):
    """SSE over HTTP/1.1: the stream on one connection, POSTs on the session's pool."""

    transport = "sse"

    def __init__(self, *args: Any, http: aiohttp.ClientSession, base_url: str) -> None:
        super().__init__(*args)
        self.http = http
        self.base_url = base_url
        self.response: aiohttp.ClientResponse | None = None

    async def connect(self, token: str, timeout: float) -> None:
        self._expect_joins(self.channels)
        started = time.perf_counter()
        try:
            self.response = await self.http.get(
                f"{self.base_url}/v1/sse",
                params={"token": token, "ch": ",".join(self.channels)},
                headers={"Last-Event-ID": str(self.since)} if self.since is not None else None,
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectError(
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            ) from None
        if self.response.status != 200:
            self.response.release()
            raise ConnectError(f"http_{self.response.status}")
        self.phases["upgrade_ms"] = (time.perf_counter() - started) * 1000
        self.open = True
        self._reader = asyncio.create_task(self._read())
        started = time.perf_counter()
        await self._wait_joined(timeout)
        self.phases["join_ms"] = (time.perf_counter() - started) * 1000

    async def _read(self) -> None:
        assert self.response is not None
        try:
            async for chunk in self.response.content.iter_any():
                self._feed(chunk)
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            self.open = False

    async def _post(self, path: str, body: bytes) -> None:
        try:
            async with self.http.post(
                f"{self.base_url}{path}", params={"sid": self.sid}, data=body
            ) as response:
                await response.read()
        except (aiohttp.ClientError, OSError):
            pass

    def drop(self) -> None:
        connection = self.response.connection if self.response is not None else None
        if connection is not None and connection.transport is not None:
            connection.transport.abort()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.response is not None:
            self.response.close()


class Sse2Client(_SseBase):
    """SSE over HTTP/2 with TLS on one connection per user (``loadgen.h2conn``): the token
    call, the stream and the POSTs are streams on it, as a browser would send them."""

    transport = "sse-h2"

    def __init__(
        self, *args: Any, base_url: str, tls: ssl.SSLContext, source_ip: str | None = None
    ) -> None:
        super().__init__(*args)
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 443
        self.tls = tls
        self.source_ip = source_ip
        self.proto: h2conn.H2ClientProtocol | None = None

    async def prepare(self, timeout: float) -> None:
        """TCP and TLS (with ALPN h2), timed on their own."""
        started = time.perf_counter()
        try:
            self.proto = await h2conn.connect(
                self.host, self.port, self.tls, timeout, source_ip=self.source_ip
            )
        except h2conn.H2Error as exc:
            raise ConnectError(exc.kind) from None
        except TimeoutError:
            raise ConnectError("connect_timeout") from None
        except OSError as exc:
            raise ConnectError(
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            ) from None
        self.phases["tcp_tls_ms"] = (time.perf_counter() - started) * 1000

    async def request(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.proto is not None
        try:
            return await self.proto.request("POST", path, body)
        except h2conn.H2Error as exc:
            raise ConnectError(exc.kind) from None

    async def connect(self, token: str, timeout: float) -> None:
        assert self.proto is not None
        started = time.perf_counter()
        query = urlencode({"token": token, "ch": ",".join(self.channels)})
        self._expect_joins(self.channels)
        try:
            headers = (
                [(b"last-event-id", str(self.since).encode())] if self.since is not None else []
            )
            stream = self.proto.start(
                "GET", f"/v1/sse?{query}", on_data=self._feed, headers=headers
            )
            async with asyncio.timeout(timeout):
                status = await stream.response
        except h2conn.H2Error as exc:
            raise ConnectError(exc.kind) from None
        except TimeoutError:
            raise ConnectError("upgrade_timeout") from None
        if status != 200:
            raise ConnectError(f"http_{status}")
        self.phases["upgrade_ms"] = (time.perf_counter() - started) * 1000
        self.open = True
        assert stream.done is not None
        stream.done.add_done_callback(self._stream_ended)
        started = time.perf_counter()
        await self._wait_joined(timeout)
        self.phases["join_ms"] = (time.perf_counter() - started) * 1000

    def _stream_ended(self, done: asyncio.Future[None]) -> None:
        self.open = False
        if not done.cancelled():
            done.exception()

    async def _post(self, path: str, body: bytes) -> None:
        if self.proto is None:
            return
        with contextlib.suppress(h2conn.H2Error):
            await self.proto.request("POST", f"{path}?sid={self.sid}", body)

    def drop(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abort()

    async def close(self) -> None:
        self.open = False
        if self.proto is not None:
            self.proto.close()


class PlainSseClient(Client):
    """``sse-plain``: any SSE endpoint whose event data is JSON holding the send time, in
    milliseconds since the Unix epoch, in field ``time_field``. Latency = arrival - that,
    so server and generator clocks must agree (same host, or NTP-synchronised)."""

    transport = "sse"

    def __init__(self, *args: Any, http: aiohttp.ClientSession, url: str, time_field: str) -> None:
        super().__init__(*args)
        self.http = http
        self.url = url
        self.time_field = time_field
        self.decoder = SseDecoder()
        self.response: aiohttp.ClientResponse | None = None

    async def connect(self, token: str, timeout: float) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                self.response = await self.http.get(
                    self.url, headers={"Accept": "text/event-stream"}
                )
        except TimeoutError:
            raise ConnectError("upgrade_timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectError(
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            ) from None
        if self.response.status != 200:
            self.response.release()
            raise ConnectError(f"http_{self.response.status}")
        self.phases["upgrade_ms"] = (time.perf_counter() - started) * 1000
        self.open = True
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.response is not None
        field = self.time_field
        try:
            async for chunk in self.response.content.iter_any():
                now_ms = time.time_ns() / 1e6
                received = time.monotonic_ns()
                for event in self.decoder.feed(chunk):
                    try:
                        sent = orjson.loads(event.data).get(field)
                    except (orjson.JSONDecodeError, AttributeError):
                        sent = None
                    us = (
                        int((now_ms - float(sent)) * 1000)
                        if isinstance(sent, int | float)
                        else None
                    )
                    self.on_frame(self, {"op": "plain", "us": us}, received)
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            self.open = False

    async def heartbeat(self) -> None:
        return None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.response is not None:
            self.response.close()


class PlainWsClient(Client):
    """``ws-echo``: any WebSocket echo server. No token, no join: each text frame sent holds
    ``{"t": intended_send_ns, "p": padding}`` and whatever comes back is matched by ``t``.

    On picows, chosen by measurement for this CPU-bound mode: frames arrive by callback
    straight from the protocol and are sent by a plain call, so no coroutine runs per
    message, and replies go to ``on_echo(body, received_ns)`` without a frame dict
    (README, "Client libraries")."""

    transport = "ws"

    def __init__(
        self,
        *args: Any,
        ws_url: str,
        on_echo: Callable[[Any, int], None],
        source_ip: str | None = None,
    ) -> None:
        super().__init__(*args)
        self.ws_url = ws_url
        self.source_ip = source_ip
        self.on_echo = on_echo
        self.ws: Any = None
        self._text: Any = None
        self._pad = b""

    @property
    def padding(self) -> int:
        return len(self._pad)

    @padding.setter
    def padding(self, size: int) -> None:
        self._pad = b"x" * size

    async def connect(self, token: str, timeout: float) -> None:
        from picows import WSListener, WSMsgType, ws_connect

        client = self
        loads, now, on_echo = orjson.loads, time.monotonic_ns, self.on_echo
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY

        class Listener(WSListener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                kind = frame.msg_type
                if kind is text or kind is binary:
                    received = now()
                    try:
                        body = loads(frame.get_payload_as_memoryview())
                    except orjson.JSONDecodeError:
                        body = None
                    on_echo(body, received)

            def on_ws_disconnected(self, transport: Any) -> None:
                client.open = False

        source_ip = self.source_ip
        started = time.perf_counter()
        try:
            self.ws, _ = await ws_connect(
                Listener,
                self.ws_url,
                websocket_handshake_timeout=timeout,
                # picows reads into 16 KiB per connection by default; echo frames are small.
                read_buffer_init_size=READ_BUFFER_BYTES,
                socket_factory=(lambda _url: bound_socket(source_ip)) if source_ip else None,
            )
        except TimeoutError:
            raise ConnectError("upgrade_timeout") from None
        except OSError as exc:
            raise ConnectError(
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
            ) from None
        except Exception as exc:
            raise ConnectError(type(exc).__name__) from None
        self._text = text
        self.phases["upgrade_ms"] = (time.perf_counter() - started) * 1000
        self.open = True

    def send_echo(self, intended_ns: int) -> None:
        """Send ``{"t": intended_ns, "p": padding}`` now, without awaiting."""
        if self.open:
            self.ws.send(self._text, b'{"t":%d,"p":"%b"}' % (intended_ns, self._pad))

    async def echo(self, body: Any) -> None:
        if self.open:
            self.ws.send(self._text, orjson.dumps(body))

    async def heartbeat(self) -> None:
        return None

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.underlying_transport.abort()

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.send_close()
                self.ws.disconnect()
