"""Transports over one hub: aiohttp (REST, WebSocket, SSE/1.1) and ASGI (SSE/2 under hypercorn).

:mod:`servers.transports.rest` holds what both share, so each transport only adapts
its framework's request and response objects.
"""
