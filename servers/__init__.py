"""Reference WebSocket and Server-Sent Events servers for rtbench.

The messaging stack is the one of the project's founding article: short-lived
tokens, DAO governance with token-gated channels, hybrid logical clocks,
presence with heartbeats, a broker between instances and replay on reconnect.

Layout (imports point inward, toward :mod:`servers.core`)::

    servers/core/        sans-I/O: HLC, auth, realm, presence, rate limit, protocol
    servers/brokers/     Broker interface; memory and Redis implementations
    servers/hub.py       sessions, joins, fan-out to local connections (one per process)
    servers/transports/  aiohttp (REST, WebSocket, SSE/1.1) and ASGI (SSE/2 under hypercorn)
    servers/runner.py    ``rtbench serve``: processes, embedded Valkey, signals, drain
"""
