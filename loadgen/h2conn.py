"""A lean HTTP/2 client connection: the ``h2`` state machine on an asyncio protocol.

One TLS connection per simulated user, as a browser holds one per origin. Requests are
streams on it: short ones (token, POSTs) collect their body; the SSE stream hands each DATA
chunk to a callback as it arrives. No pool, no per-request objects beyond a small stream
record, which is what lets one generator process hold thousands of SSE/2 streams (httpx keeps
a pool, a response object and several tasks per connection, and slows badly past a few
thousand).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from loadgen.net import bound_socket

OnData = Callable[[bytes], None]


class H2Error(Exception):
    """The connection or a stream failed; ``kind`` names it for the error counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class _Stream:
    response: asyncio.Future[int]
    on_data: OnData | None = None
    body: bytearray = field(default_factory=bytearray)
    done: asyncio.Future[None] | None = None
    pending: bytes = b""
    """Request body not yet sent for lack of flow-control window."""


class H2ClientProtocol(asyncio.Protocol):
    def __init__(self, authority: str) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.authority = authority.encode()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # A large window so the server never waits on us for the long-lived SSE stream.
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.conn.increment_flow_control_window(1 << 24)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._fail("h2_protocol_error")
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                stream = self.streams.get(event.stream_id)
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if stream is not None:
                    if stream.on_data is not None:
                        stream.on_data(event.data)
                    else:
                        stream.body += event.data
            elif isinstance(event, h2.events.ResponseReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and not stream.response.done():
                    status = next((int(v) for k, v in event.headers if k == b":status"), 0)
                    stream.response.set_result(status)
            elif isinstance(event, h2.events.StreamEnded):
                self._end(event.stream_id, None)
            elif isinstance(event, h2.events.StreamReset):
                self._end(event.stream_id, H2Error(f"h2_reset_{event.error_code}"))
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_pending()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._fail(f"h2_goaway_{event.error_code}")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection_lost")
        if not self.closed.done():
            self.closed.set_result(None)

    # -- requests -----------------------------------------------------------------

    def start(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        on_data: OnData | None = None,
        content_type: bytes = b"application/json",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> _Stream:
        if self.transport is None or self.transport.is_closing():
            raise H2Error("connection_closed")
        loop = asyncio.get_running_loop()
        stream_id = self.conn.get_next_available_stream_id()
        request = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path.encode()),
            *(headers or ()),
        ]
        if body:
            request += [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        stream = _Stream(loop.create_future(), on_data, done=loop.create_future())
        self.streams[stream_id] = stream
        self.conn.send_headers(stream_id, request, end_stream=not body)
        if body:
            stream.pending = body
            self._send_stream(stream_id, stream)
        self._flush()
        return stream

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """A short request: status and the whole body."""
        stream = self.start(method, path, body)
        status = await stream.response
        assert stream.done is not None
        await stream.done
        return status, bytes(stream.body)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.H2Error):
                self.conn.close_connection()
                self._flush()
            self.transport.close()

    # -- internals ----------------------------------------------------------------

    def _send_stream(self, stream_id: int, stream: _Stream) -> None:
        while stream.pending:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                return
            chunk, stream.pending = stream.pending[:window], stream.pending[window:]
            self.conn.send_data(stream_id, chunk, end_stream=not stream.pending)

    def _send_pending(self) -> None:
        for stream_id, stream in self.streams.items():
            if stream.pending:
                self._send_stream(stream_id, stream)

    def _end(self, stream_id: int, error: H2Error | None) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        if not stream.response.done():
            if error is None:
                stream.response.set_exception(H2Error("h2_no_response"))
            else:
                stream.response.set_exception(error)
            stream.response.exception()  # mark retrieved: a caller may have stopped waiting
        if stream.done is not None and not stream.done.done():
            if error is None:
                stream.done.set_result(None)
            else:
                stream.done.set_exception(error)
                stream.done.exception()

    def _fail(self, kind: str) -> None:
        for stream_id in list(self.streams):
            self._end(stream_id, H2Error(kind))

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def connect(
    host: str, port: int, tls: ssl.SSLContext, timeout: float, source_ip: str | None = None
) -> H2ClientProtocol:
    """Open a TLS connection that negotiated ``h2`` by ALPN, from ``source_ip`` if given."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        if source_ip:
            sock = bound_socket(source_ip)
            try:
                await loop.sock_connect(sock, (host, port))
            except BaseException:
                sock.close()
                raise
            transport, protocol = await loop.create_connection(
                lambda: H2ClientProtocol(f"{host}:{port}"),
                sock=sock,
                ssl=tls,
                server_hostname=host,
            )
        else:
            transport, protocol = await loop.create_connection(
                lambda: H2ClientProtocol(f"{host}:{port}"),
                host,
                port,
                ssl=tls,
                server_hostname=host,
            )
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
        transport.close()
        raise H2Error("no_h2_alpn")
    return protocol


def h2_context(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    return context
