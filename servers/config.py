"""Server configuration: one frozen value, limits grouped and named.

``ServerConfig(broker="redis://127.0.0.1:6379/0", max_message_bytes=16_384)``
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection limits; a client that crosses one is told, then closed if it persists."""

    max_message_bytes: int = 64 * 1024
    """Largest client frame, after decompression; above it WS closes with 1009."""
    send_queue_limit: int = 1024
    """Frames waiting for a slow client; past it the client is disconnected (4008)."""
    max_errors: int = 10
    """Malformed or refused frames tolerated on one connection before close 1008."""
    publish_rate: float = 50.0
    """Publishes per second per connection (token bucket)."""
    publish_burst: float = 100.0
    handshake_timeout_s: float = 10.0
    """Seconds to complete the WebSocket upgrade or the SSE stream start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Everything one server process needs; shared by all transports."""

    broker: str = "memory"
    namespace: str = "rtb:"
    realm_file: str | None = None
    seed: int = 0
    users: int = 100_000
    daos: int = 10
    admin_key: str | None = None
    token_ttl_s: int = 30
    heartbeat_s: float = 60.0
    presence_expiry_s: float = 90.0
    history_count: int = 1000
    history_age_s: float = 300.0
    max_drift_ms: int = 60_000
    gate_delay_s: float = 0.0
    """Simulated latency of the token-gating lookup (a chain RPC in production)."""
    allowed_origins: tuple[str, ...] = ()
    sse_keepalive_s: float = 15.0
    gc_freeze_s: float = 5.0
    """Freeze surviving objects out of the cyclic collector's walk this often (0: off);
    see servers/gcpolicy.py."""
    limits: Limits = Limits()
