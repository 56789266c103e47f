"""Redis broker, after the founding article.

- Offsets: ``INCR {ns}{ch}:seq``; history: a capped stream ``{ns}{ch}:log`` whose entry ids
  are ``<offset>-0``, so a resume is one ``XRANGE``; fan-out: ``PUBLISH {ns}m:{ch}``. The
  three happen in one Lua script, so Pub/Sub order is offset order on every instance.
- Presence: sorted set ``{ns}{ch}:pres`` (member ``user|conn``, score = last heartbeat,
  ``ZADD GT`` so a late heartbeat never moves a score back) and a hash ``{ns}{ch}:users``
  counting each user's connections, so a transition is decided atomically by one script
  even when several instances race.
- Control events (balance changes, frames for a session on another node): ``{ns}control``.

The sweep script reads keys it derives from a set of channels, which Redis Cluster does
not allow; this backend targets a single Redis (or Valkey) server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import redis.asyncio as aioredis

from servers.brokers.base import Broker, History, frame_id
from servers.core.presence import State, Transition

_PUBLISH = """
local id = redis.call('INCR', KEYS[1])
local frame = '{"op":"msg","id":' .. id .. ',' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 't', ARGV[3], 'f', frame)
redis.call('PUBLISH', KEYS[3], frame)
return id
"""

# Join and heartbeat are one operation: a connection that is not in the set (new, or
# expired by a sweep) is added and may bring its user online.
_PRESENCE_SEEN = """
local added = redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[1])
if added == 1 then
  redis.call('SADD', KEYS[3], ARGV[4])
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
end
return 0
"""

_PRESENCE_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"""

_PRESENCE_SWEEP = """
local out = {}
for _, ch in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local z = ARGV[2] .. ch .. ':pres'
  local h = ARGV[2] .. ch .. ':users'
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. ARGV[1])) do
    redis.call('ZREM', z, m)
    local user = string.match(m, '^(.*)|[^|]*$')
    if redis.call('HINCRBY', h, user, -1) <= 0 then
      redis.call('HDEL', h, user)
      table.insert(out, ch)
      table.insert(out, user)
    end
  end
  if redis.call('ZCARD', z) == 0 then redis.call('SREM', KEYS[1], ch) end
end
return out
"""


SUBSCRIBE_TIMEOUT_S = 10.0


REDIS_CONNECTIONS = 64
REDIS_WAIT_S = 30.0


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        node: str,
        history_count: int,
        history_age_ms: int,
        namespace: str = "rtb:",
    ) -> None:
        super().__init__(node=node, history_count=history_count, history_age_ms=history_age_ms)
        self.url = url
        self.ns = namespace
        # Callers queue for one of a bounded set of connections instead of failing with
        # "Too many connections" when thousands of joins or closes arrive at once (the
        # default pool refuses the 101st concurrent command).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_S
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._pubsub = self._redis.pubsub()
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self._publish = self._redis.register_script(_PUBLISH)
        self._seen = self._redis.register_script(_PRESENCE_SEEN)
        self._leave = self._redis.register_script(_PRESENCE_LEAVE)
        self._sweep = self._redis.register_script(_PRESENCE_SWEEP)
        self._reader: asyncio.Task[None] | None = None
        self._msg_prefix = f"{namespace}m:".encode()
        self._control_key = f"{namespace}control"

    async def start(self, on_message: Any, on_control: Any) -> None:
        await super().start(on_message, on_control)
        await self._redis.ping()
        await self._pubsub.subscribe(self._control_key)
        self._reader = asyncio.create_task(self._read(), name="redis-broker-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()
        await self._redis.aclose(close_connection_pool=True)

    async def _read(self) -> None:
        prefix, cut = self._msg_prefix, len(self._msg_prefix)
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is None:
                continue
            channel: bytes = message["channel"]
            if message["type"] == "subscribe":
                for waiter in self._confirming.pop(channel, ()):
                    if not waiter.done():
                        waiter.set_result(None)
                continue
            if message["type"] != "message":
                continue
            data: bytes = message["data"]
            if channel.startswith(prefix):
                self.on_message(channel[cut:].decode(), frame_id(data), data)
            else:
                self.on_control(orjson.loads(data))

    def _key(self, ch: str, suffix: str) -> str:
        return f"{self.ns}{ch}:{suffix}"

    async def publish(self, ch: str, tail: bytes, now_ms: int) -> int:
        keys = [self._key(ch, "seq"), self._key(ch, "log"), f"{self.ns}m:{ch}"]
        return int(await self._publish(keys=keys, args=[tail, self.history_count, now_ms]))

    async def broadcast(self, ch: str, frame: bytes) -> None:
        await self._redis.publish(f"{self.ns}m:{ch}", frame)

    async def subscribe(self, ch: str) -> None:
        """Subscribe and wait for Redis to confirm, so no publish after this returns is missed."""
        name = f"{self.ns}m:{ch}"
        waiter = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(name.encode(), []).append(waiter)
        await self._pubsub.subscribe(name)
        await asyncio.wait_for(waiter, SUBSCRIBE_TIMEOUT_S)

    async def unsubscribe(self, ch: str) -> None:
        await self._pubsub.unsubscribe(f"{self.ns}m:{ch}")

    async def last_id(self, ch: str) -> int:
        raw = await self._redis.get(self._key(ch, "seq"))
        return int(raw) if raw is not None else 0

    async def history(self, ch: str, since: int, now_ms: int) -> History:
        last_id = await self.last_id(ch)
        if since > last_id:
            return History(recovered=False, last_id=last_id)
        if since == last_id:
            return History(last_id=last_id)
        # The window is the newest history_count offsets; the stream may keep a few more
        # (MAXLEN ~ trims whole nodes), which are not served, so both backends agree.
        start = max(since, last_id - self.history_count) + 1
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._redis.xrange(
            self._key(ch, "log"), min=f"{start}-0", max=f"{last_id}-0"
        )  # type: ignore[assignment]
        oldest = now_ms - self.history_age_ms
        frames = [
            (int(entry_id.split(b"-", 1)[0]), fields[b"f"])
            for entry_id, fields in entries
            if int(fields[b"t"]) >= oldest
        ]
        missed = (last_id - since) - len(frames)
        return History(frames=frames, recovered=missed == 0, missed=missed, last_id=last_id)

    def _presence_keys(self, ch: str) -> list[str]:
        return [self._key(ch, "pres"), self._key(ch, "users"), f"{self.ns}presence-channels"]

    async def presence_join(self, ch: str, user: str, conn: str, now_ms: int) -> bool:
        args: list[str | int] = [f"{user}|{conn}", user, now_ms, ch]
        return bool(await self._seen(keys=self._presence_keys(ch), args=args))

    presence_heartbeat = presence_join

    async def presence_leave(self, ch: str, user: str, conn: str) -> bool:
        keys = self._presence_keys(ch)[:2]
        return bool(await self._leave(keys=keys, args=[f"{user}|{conn}", user]))

    async def presence_sweep(self, now_ms: int, expiry_ms: int) -> list[Transition]:
        flat = await self._sweep(
            keys=[f"{self.ns}presence-channels"], args=[now_ms - expiry_ms, self.ns]
        )
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return [Transition(ch.decode(), user.decode(), State.OFFLINE) for ch, user in pairs]

    async def members(self, ch: str) -> list[str]:
        users: list[bytes] = await self._redis.hkeys(self._key(ch, "users"))  # type: ignore[assignment]
        return sorted(u.decode() for u in users)

    async def control(self, event: dict[str, Any]) -> None:
        await self._redis.publish(self._control_key, orjson.dumps(event))

    async def presence_connections(self, ch: str) -> int:
        """Connections registered in ``ch`` (for tests and metrics)."""
        return int(await self._redis.zcard(self._key(ch, "pres")))
