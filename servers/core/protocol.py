"""The rtbench wire protocol: one codec for the servers and the load generator.

Frames are JSON objects with an ``op`` (../shared/DESIGN.md, "Wire protocol").

Client → server: ``join {ch, since?}``, ``leave {ch}``, ``pub {ch, body, cid, hlc?}``,
``hb``, ``echo {body}``.

Server → client: ``hello {sid, node}``, ``joined {ch, members, last, recovered?, missed?}``,
``msg {id, ch, hlc, from, body}``, ``ack {cid, id, hlc}``, ``presence {ch, user, state}``,
``revoked {ch, reason}``, ``echo {body}``, ``error {code, reason}``.

``msg`` frames are built once per publish and fanned out as bytes: the broker assigns
``id`` and prefixes it to the encoded tail (:func:`msg_frame`), so no subscriber path
re-encodes JSON.

SSE events follow the WHATWG HTML standard, section 9.2 "Server-sent events": the
event name is the op, ``data:`` is the same JSON, ``id:`` is set on ``msg`` events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import orjson

from servers.core.errors import ProtocolError

JSON = Any


@dataclass(frozen=True, slots=True)
class Join:
    ch: str
    since: int | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    ch: str


@dataclass(frozen=True, slots=True)
class Pub:
    ch: str
    body: JSON
    cid: str | int | None = None
    hlc: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Echo:
    body: JSON


ClientOp = Join | Leave | Pub | Heartbeat | Echo

_HEARTBEAT = Heartbeat()


def _channel(frame: dict[str, Any], op: str) -> str:
    ch = frame.get("ch")
    if not isinstance(ch, str) or not ch or len(ch) > 200:
        raise ProtocolError("bad_frame", f"{op}: 'ch' must be a non-empty string of <= 200 chars")
    return ch


def decode_client(data: str | bytes) -> ClientOp:
    """Parse one client frame; raises :class:`ProtocolError` naming what is wrong."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"malformed JSON: {exc.msg}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "a frame must be a JSON object")
    op = frame.get("op")
    if op == "pub":
        cid = frame.get("cid")
        if cid is not None and not isinstance(cid, str | int):
            raise ProtocolError("bad_frame", "pub: 'cid' must be a string or an integer")
        hlc = frame.get("hlc")
        if hlc is not None and not isinstance(hlc, str):
            raise ProtocolError("bad_frame", "pub: 'hlc' must be a string")
        return Pub(_channel(frame, "pub"), frame.get("body"), cid, hlc)
    if op == "echo":
        return Echo(frame.get("body"))
    if op == "hb":
        return _HEARTBEAT
    if op == "join":
        since = frame.get("since")
        if since is not None and (type(since) is not int or since < 0):
            raise ProtocolError("bad_frame", "join: 'since' must be an integer >= 0")
        return Join(_channel(frame, "join"), since)
    if op == "leave":
        return Leave(_channel(frame, "leave"))
    raise ProtocolError("unknown_op", f"unknown op {str(op)[:40]!r}")


# -- credentials (how a load generator logs in as any user of a generated realm) --------


def generated_realm_secret(seed: int) -> str:
    """The realm secret of ``rtbench serve --seed SEED`` without a realm file."""
    return hashlib.sha256(f"rtbench-realm-{seed}".encode()).hexdigest()


def user_secret(realm_secret: str, user: str) -> str:
    """The login secret of ``user``: HMAC-SHA256(realm secret, user), hex, 32 characters."""
    return hmac.new(realm_secret.encode(), user.encode(), hashlib.sha256).hexdigest()[:32]


# -- client-side encoders (used by the load generator) --------------------------------


def encode_join(ch: str, since: int | None = None) -> bytes:
    frame: dict[str, Any] = {"op": "join", "ch": ch}
    if since is not None:
        frame["since"] = since
    return orjson.dumps(frame)


def encode_leave(ch: str) -> bytes:
    return orjson.dumps({"op": "leave", "ch": ch})


def encode_pub(ch: str, body: JSON, cid: str | int | None = None) -> bytes:
    return orjson.dumps({"op": "pub", "ch": ch, "body": body, "cid": cid})


def encode_echo(body: JSON) -> bytes:
    return orjson.dumps({"op": "echo", "body": body})


HEARTBEAT_FRAME = b'{"op":"hb"}'


# -- server-side encoders ----------------------------------------------------------------


def hello(sid: str, node: str) -> bytes:
    return orjson.dumps({"op": "hello", "sid": sid, "node": node})


def joined(
    ch: str, members: list[str], *, last: int, recovered: bool | None = None, missed: int = 0
) -> bytes:
    """``last`` is the channel offset the client's stream starts after."""
    frame: dict[str, Any] = {"op": "joined", "ch": ch, "members": members, "last": last}
    if recovered is not None:
        frame["recovered"] = recovered
        frame["missed"] = missed
    return orjson.dumps(frame)


def msg_tail(ch: str, hlc: str, sender: str, body: JSON) -> bytes:
    """The part of a ``msg`` frame after ``"id":N,`` (still starting with ``{``)."""
    return orjson.dumps({"ch": ch, "hlc": hlc, "from": sender, "body": body})


def msg_frame(msg_id: int, tail: bytes) -> bytes:
    """Splice the broker-assigned ``id`` into an encoded tail: one copy, no re-encoding."""
    return b'{"op":"msg","id":%d,%s' % (msg_id, tail[1:])


def ack(cid: str | int | None, msg_id: int, hlc: str) -> bytes:
    return orjson.dumps({"op": "ack", "cid": cid, "id": msg_id, "hlc": hlc})


def presence(ch: str, user: str, state: str) -> bytes:
    return orjson.dumps({"op": "presence", "ch": ch, "user": user, "state": state})


def revoked(ch: str, reason: str) -> bytes:
    return orjson.dumps({"op": "revoked", "ch": ch, "reason": reason})


def echo(body: JSON) -> bytes:
    return orjson.dumps({"op": "echo", "body": body})


def error(code: str, reason: str) -> bytes:
    return orjson.dumps({"op": "error", "code": code, "reason": reason})


def op_of(frame: bytes) -> str:
    """The op of a frame this module encoded (``{"op":"NAME",...``), without parsing it all."""
    end = frame.index(b'"', 7)
    return frame[7:end].decode()


# -- SSE ---------------------------------------------------------------------------------

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def sse_event(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """Encode one SSE event.

    A CR or LF inside ``data`` would end the field early, so data is split into one
    ``data:`` line per line (the client joins them with LF). CR, LF or NUL in the event
    name or id would inject fields or be ignored by clients, so they are refused.
    """
    for name, value in (("event", event), ("id", event_id or "")):
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"SSE {name} must not contain CR, LF or NUL: {value[:40]!r}")
    head = b"event: %s\n" % event.encode()
    if event_id is not None:
        head += b"id: %s\n" % event_id.encode()
    if b"\n" in data or b"\r" in data:
        body = b"".join(b"data: %s\n" % line for line in _LINE_BREAK.split(data))
    else:
        body = b"data: %s\n" % data
    return head + body + b"\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
