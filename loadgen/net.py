"""Client sockets bound to a chosen loopback source address.

Binding before ``connect`` normally makes the kernel pick the port at ``bind`` time, from
ports free for *any* destination, which collides with ports in TIME_WAIT ("Address already
in use") long before the range is used up. ``IP_BIND_ADDRESS_NO_PORT`` defers the choice to
``connect``, where the full 4-tuple is known (../shared/ANCHORS.md, "Pitfalls").
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bound_socket(source_ip: str, family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source_ip, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def socket_factory(source_ip: str) -> Callable[[Any], socket.socket]:
    """For ``aiohttp.TCPConnector(socket_factory=...)``: every connection from ``source_ip``."""

    def make(addr_info: Any) -> socket.socket:
        family = addr_info[0]
        if family != socket.AF_INET:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            return sock
        return bound_socket(source_ip, family)

    return make
