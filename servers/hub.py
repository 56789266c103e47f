"""The hub: one per server process, shared by every transport.

It authenticates, keeps the sessions and their channel memberships, runs joins
(token gating, subscription, presence, replay) and fans broker frames out to local
sessions. Transports only move bytes between a socket and a :class:`Session`.

The founding article's hard cases live here:

- a client that disconnects while its gating check is pending: every await in a join
  is followed by a check, and a join that finds its session closed (or the membership
  left) undoes what it did; :meth:`Hub.close` waits for pending joins before it cleans up;
- concurrent joins of one user: a membership per (session, channel), presence counted
  per connection in the broker, so one ``online`` broadcast;
- messages published during a reconnect: the session subscribes (buffering live frames)
  *before* reading history, replays history, then flushes the buffer without duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from servers.brokers.base import Broker
from servers.config import ServerConfig
from servers.core import protocol
from servers.core.auth import TokenIssuer, user_secret
from servers.core.errors import AuthError, ChannelError, ClockDriftError, ProtocolError
from servers.core.hlc import HLC, Clock
from servers.core.ratelimit import TokenBucket
from servers.core.realm import Realm, parse_channel
from servers.metrics import Metrics
from servers.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    Membership,
    MemberState,
    Session,
    SseSession,
    Transport,
)

log = logging.getLogger("rtbench.server")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Hub:
    def __init__(self, config: ServerConfig, broker: Broker, realm: Realm, *, node: str) -> None:
        self.config = config
        self.broker = broker
        self.realm = realm
        self.node = node
        self.issuer = TokenIssuer(realm.secret, ttl_s=config.token_ttl_s)
        self.admin_key = config.admin_key or realm.secret
        self.clock = Clock(node, max_drift_ms=config.max_drift_ms)
        self.metrics = Metrics()
        self.sessions: dict[str, Session] = {}
        self.by_user: dict[str, set[Session]] = {}
        self.local: dict[str, set[Session]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.draining = False

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self._on_message, self._on_control)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="presence-sweeper")
        self._keepalive = asyncio.create_task(self._keepalive_loop(), name="sse-keepalive")

    async def stop(self) -> None:
        """Drain: every session is told the server is going away, then cleaned up."""
        self.draining = True
        for task in (self._sweeper, self._keepalive):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for session in list(self.sessions.values()):
            session.end(CLOSE_GOING_AWAY, "server shutting down")
        for session in list(self.sessions.values()):
            await self.close(session)
        await self.broker.close()

    async def _sweep_loop(self) -> None:
        expiry_ms = int(self.config.presence_expiry_s * 1000)
        period = max(0.05, min(10.0, self.config.presence_expiry_s / 3))
        while True:
            await asyncio.sleep(period)
            try:
                for t in await self.broker.presence_sweep(_now_ms(), expiry_ms):
                    await self.broker.broadcast(
                        t.channel, protocol.presence(t.channel, t.user, t.state.value)
                    )
            except Exception:
                log.exception("presence sweep failed")

    async def _keepalive_loop(self) -> None:
        # A comment line keeps an idle SSE stream open through proxies and lets the server
        # notice a vanished client; a stream that carried a frame since the last tick is
        # not idle, so a busy server does not write 10,000 comments at once.
        while True:
            await asyncio.sleep(self.config.sse_keepalive_s)
            for session in list(self.sessions.values()):
                if session.transport is Transport.WS:
                    continue
                if session.active:
                    session.active = False
                elif not session.queue:
                    session.push_raw(protocol.SSE_KEEPALIVE)

    # -- auth -----------------------------------------------------------------------

    def login(self, user: str, secret: str) -> str:
        """A token for ``user`` if ``secret`` is its credential; raises AuthError(403)."""
        if self.realm.user(user) is None or not secrets.compare_digest(
            secret, user_secret(self.realm.secret, user)
        ):
            self.metrics.auth_failures["403"] += 1
            raise AuthError(403, "unknown user or wrong secret")
        return self.issuer.issue(user, now=time.time())

    def authenticate(self, token: str | None) -> str:
        try:
            return self.issuer.verify(token, now=time.time()).user
        except AuthError as exc:
            self.metrics.auth_failures[str(exc.status)] += 1
            raise

    # -- sessions -------------------------------------------------------------------

    def open(
        self, user: str, transport: Transport, *, sse_order: list[str] | None = None
    ) -> Session:
        """Register a connection; SSE streams pass their channels in ``ch`` order."""
        limits = self.config.limits
        args = (f"{self.node}.{secrets.token_hex(12)}", user, transport)
        kwargs: dict[str, Any] = {
            "queue_limit": limits.send_queue_limit,
            "bucket": TokenBucket(
                rate=limits.publish_rate, burst=limits.publish_burst, now=time.monotonic()
            ),
            "on_overflow": self._overflow,
        }
        session = (
            Session(*args, **kwargs)
            if sse_order is None
            else SseSession(*args, order=sse_order, **kwargs)
        )
        self.sessions[session.sid] = session
        self.by_user.setdefault(user, set()).add(session)
        self.metrics.connections[transport.value] += 1
        session.push(protocol.hello(session.sid, self.node))
        return session

    async def close(self, session: Session) -> None:
        """Forget a session: wait for its pending joins (they undo themselves), then leave."""
        if session.sid not in self.sessions:
            return
        session.end(session.close_code, session.close_reason)
        if self.sessions.pop(session.sid, None) is not None:
            self.metrics.connections[session.transport.value] -= 1
        peers = self.by_user.get(session.user)
        if peers is not None:
            peers.discard(session)
            if not peers:
                del self.by_user[session.user]
        if session.pending:
            await asyncio.gather(*session.pending, return_exceptions=True)
        for ch in list(session.channels):
            await self._drop(session, ch)

    def _overflow(self, session: Session) -> None:
        self.metrics.send_queue_disconnects += 1
        reason = f"send queue full ({session.queue_limit} frames)"
        session.end(CLOSE_SLOW_CONSUMER, reason, flush=False)

    # -- client operations ----------------------------------------------------------

    async def receive(self, session: Session, data: str | bytes) -> None:
        """Handle one client frame; refusals become ``error`` ops, never exceptions."""
        self.metrics.messages_in[session.transport.value] += 1
        try:
            await self.handle(session, protocol.decode_client(data))
        except ProtocolError as exc:
            self.refuse(session, exc.code, exc.reason)

    async def handle(self, session: Session, op: protocol.ClientOp) -> None:
        if isinstance(op, protocol.Pub):
            await self._publish_op(session, op)
        elif isinstance(op, protocol.Echo):
            session.push(protocol.echo(op.body))
        elif isinstance(op, protocol.Heartbeat):
            await self._heartbeat(session)
        elif isinstance(op, protocol.Join):
            self.join(session, op.ch, op.since)
        else:
            await self._leave(session, op.ch)

    def refuse(self, session: Session, code: str, reason: str) -> None:
        self.metrics.errors[code] += 1
        session.errors += 1
        session.push(protocol.error(code, reason))
        if session.errors >= self.config.limits.max_errors:
            session.end(CLOSE_POLICY, f"too many errors ({session.errors})")

    def join(self, session: Session, ch: str, since: int | None = None) -> None:
        """Start joining ``ch``; the outcome (``joined`` or ``error``) goes to the session."""
        member = session.channels.get(ch)
        if member is not None:
            # A second join of the same channel on the same connection adds nothing: the
            # membership exists (or is being made) and its `joined` is or will be sent.
            return
        try:
            self.realm.room_rule(parse_channel(ch))
        except ChannelError as exc:
            self.refuse(session, "unknown_channel", str(exc))
            return
        member = session.channels[ch] = Membership(since or 0)
        task = asyncio.create_task(self._join(session, ch, member, since))
        session.pending.add(task)
        task.add_done_callback(session.pending.discard)

    def _gone(self, session: Session, ch: str, member: Membership) -> bool:
        return session.closed or session.channels.get(ch) is not member

    async def _join(self, session: Session, ch: str, member: Membership, since: int | None) -> None:
        try:
            if self.config.gate_delay_s:
                await asyncio.sleep(self.config.gate_delay_s)
            if self._gone(session, ch, member):
                await self._undo(session, ch, member)
                return
            reason = self.realm.check_join(session.user, parse_channel(ch))
            if reason is not None:
                del session.channels[ch]
                self.refuse(session, "forbidden", f"{ch}: {reason}")
                return
            member.state = MemberState.REPLAYING
            await self._subscribe_local(session, ch)
            if self._gone(session, ch, member):
                await self._undo(session, ch, member)
                return
            online = await self.broker.presence_join(ch, session.user, session.sid, _now_ms())
            member.presence = True
            if self._gone(session, ch, member):
                await self._undo(session, ch, member)
                return
            history = None
            if since is not None:
                history = await self.broker.history(ch, since, _now_ms())
            else:
                member.last_id = await self.broker.last_id(ch)
            members = await self.broker.members(ch)
            if self._gone(session, ch, member):
                await self._undo(session, ch, member)
                return
            if history is None:
                session.push(protocol.joined(ch, members, last=member.last_id))
            else:
                self.metrics.resumes["recovered" if history.recovered else "not_recovered"] += 1
                session.push(
                    protocol.joined(
                        ch,
                        members,
                        last=history.last_id,
                        recovered=history.recovered,
                        missed=history.missed,
                    )
                )
                for msg_id, frame in history.frames:
                    session.push_msg(member, msg_id, frame)
            buffered, member.buffer = member.buffer, []
            member.state = MemberState.LIVE
            for msg_id, frame in buffered:
                session.deliver(ch, msg_id, frame)
            if online:
                await self.broker.broadcast(ch, protocol.presence(ch, session.user, "online"))
        except Exception:
            log.exception("join of %s failed", ch)
            if session.channels.get(ch) is member:
                await self._undo(session, ch, member)
            self.refuse(session, "internal", f"join of {ch} failed")

    async def _undo(self, session: Session, ch: str, member: Membership) -> None:
        """Roll back a join that lost its session or membership half-way."""
        if session.channels.get(ch) is member:
            del session.channels[ch]
        await self._release(session, ch, member)

    async def _subscribe_local(self, session: Session, ch: str) -> None:
        subscribers = self.local.get(ch)
        if subscribers is None:
            subscribers = self.local[ch] = set()
            future = self._subscribing[ch] = asyncio.get_running_loop().create_future()
            subscribers.add(session)
            try:
                await self.broker.subscribe(ch)
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)
                raise
            finally:
                del self._subscribing[ch]
            return
        subscribers.add(session)
        pending = self._subscribing.get(ch)
        if pending is not None:
            await asyncio.shield(pending)

    async def _release(self, session: Session, ch: str, member: Membership) -> None:
        subscribers = self.local.get(ch)
        if subscribers is not None and session in subscribers:
            subscribers.discard(session)
            if not subscribers:
                del self.local[ch]
                await self.broker.unsubscribe(ch)
        if member.presence:
            member.presence = False
            if await self.broker.presence_leave(ch, session.user, session.sid):
                await self.broker.broadcast(ch, protocol.presence(ch, session.user, "offline"))

    async def _drop(self, session: Session, ch: str) -> None:
        member = session.channels.pop(ch, None)
        if member is not None:
            await self._release(session, ch, member)

    async def _leave(self, session: Session, ch: str) -> None:
        await self._drop(session, ch)

    async def _heartbeat(self, session: Session) -> None:
        now = _now_ms()
        for ch, member in list(session.channels.items()):
            if member.presence and await self.broker.presence_heartbeat(
                ch, session.user, session.sid, now
            ):
                await self.broker.broadcast(ch, protocol.presence(ch, session.user, "online"))

    async def _publish_op(self, session: Session, op: protocol.Pub) -> None:
        member = session.channels.get(op.ch)
        if member is None or member.state is MemberState.PENDING:
            self.refuse(session, "not_joined", f"join {op.ch[:80]} before publishing to it")
            return
        if not session.bucket.take(time.monotonic()):
            self.refuse(session, "rate_limited", "publish rate limit exceeded")
            return
        now = _now_ms()
        if op.hlc is not None:
            try:
                self.clock.receive(HLC.parse(op.hlc), now)
            except ValueError:
                self.refuse(session, "bad_frame", "pub: 'hlc' is not '<ms>:<counter>:<node>'")
                return
            except ClockDriftError as exc:
                self.metrics.clock_drift_rejections += 1
                self.refuse(session, "clock_drift", str(exc))
                return
        stamp = str(self.clock.tick(now))
        tail = protocol.msg_tail(op.ch, stamp, session.user, op.body)
        msg_id = await self.broker.publish(op.ch, tail, now)
        self.metrics.publishes += 1
        session.push(protocol.ack(op.cid, msg_id, stamp))

    # -- broker callbacks -----------------------------------------------------------

    def _on_message(self, ch: str, msg_id: int, frame: bytes) -> None:
        subscribers = self.local.get(ch)
        if not subscribers:
            return
        out = self.metrics.messages_out
        for session in subscribers:
            session.deliver(ch, msg_id, frame)
            out[session.transport.value] += 1

    def _on_control(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "balance":
            self._apply_balance(str(event["user"]), str(event["dao"]), int(event["balance"]))
        elif kind == "op" and event.get("node") == self.node:
            session = self.sessions.get(str(event["sid"]))
            if session is not None:
                task = asyncio.create_task(self.receive(session, str(event["frame"])))
                session.pending.add(task)
                task.add_done_callback(session.pending.discard)

    # -- governance -----------------------------------------------------------------

    async def set_balance(self, user: str, dao: str, balance: int) -> None:
        """Change a balance on every instance; members who fall below a rule are revoked."""
        if self.realm.user(user) is None:
            raise ChannelError(f"no user {user!r}")
        if dao not in self.realm.daos:
            raise ChannelError(f"no DAO {dao!r}")
        await self.broker.control({"type": "balance", "user": user, "dao": dao, "balance": balance})

    def _apply_balance(self, user: str, dao: str, balance: int) -> None:
        self.realm.set_balance(user, dao, balance)
        for session in list(self.by_user.get(user, ())):
            for ch in list(session.channels):
                channel = parse_channel(ch)
                if channel.dao != dao:
                    continue
                reason = self.realm.check_join(user, channel)
                if reason is not None:
                    session.push(protocol.revoked(ch, reason))
                    task = asyncio.create_task(self._drop(session, ch))
                    session.pending.add(task)
                    task.add_done_callback(session.pending.discard)

    # -- SSE side channel -----------------------------------------------------------

    async def forward(self, sid: str, frame: bytes) -> bool:
        """Hand a client frame sent over HTTP POST to the session ``sid``, on any node.

        Returns False when ``sid`` cannot be a live session."""
        session = self.sessions.get(sid)
        if session is not None:
            await self.receive(session, frame)
            return True
        node = sid.rsplit(".", 1)[0]
        if node == self.node or "." not in sid:
            return False
        await self.broker.control({"type": "op", "node": node, "sid": sid, "frame": frame.decode()})
        return True
