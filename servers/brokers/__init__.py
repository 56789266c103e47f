"""Brokers between server instances: :class:`~servers.brokers.base.Broker` and its backends.

``memory``  one process, nothing to install (the embedded default);
``redis``   any Redis-compatible server: Pub/Sub fan-out, a capped stream per channel
            for history and offsets, sorted sets for presence.
"""

from __future__ import annotations

from servers.brokers.base import Broker, History


def make_broker(
    url: str, *, node: str, history_count: int, history_age_ms: int, namespace: str = "rtb:"
) -> Broker:
    """``memory`` or ``redis://host:port/db``."""
    if url == "memory":
        from servers.brokers.memory import MemoryBroker

        return MemoryBroker(node=node, history_count=history_count, history_age_ms=history_age_ms)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from servers.brokers.redis import RedisBroker

        return RedisBroker(
            url,
            node=node,
            history_count=history_count,
            history_age_ms=history_age_ms,
            namespace=namespace,
        )
    raise ValueError(f"broker {url!r}: use 'memory' or a redis:// URL")


__all__ = ["Broker", "History", "make_broker"]
