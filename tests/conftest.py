"""Fixtures: a real Redis (the local one, else an embedded Valkey) and real servers on loopback."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import pytest

from servers.config import ServerConfig
from servers.runner import Running, running_server
from servers.session import Transport
from servers.valkey import EmbeddedValkey, redis_answers

#: One unit of waiting; slow machines set RTBENCH_TEST_UNIT=2 or more.
UNIT = float(os.environ.get("RTBENCH_TEST_UNIT", "1"))

ALL_TRANSPORTS = {Transport.WS, Transport.SSE, Transport.SSE_H2}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("RTBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        yield url
        return
    with EmbeddedValkey() as valkey:
        yield valkey.url


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("redis_url")
    return url


ServerFactory = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def make_server(broker: str) -> ServerFactory:
    """Start a server on port 0 with this test's broker and a fresh Redis namespace."""
    namespace = f"rtbtest:{secrets.token_hex(4)}:"

    def factory(
        transports: set[Transport] | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[Running]:
        config = replace(ServerConfig(), broker=broker, namespace=namespace, users=1000)
        config = replace(config, **overrides)
        return running_server(config, transports or ALL_TRANSPORTS)

    return factory


@pytest.fixture
async def server(make_server: ServerFactory) -> AsyncIterator[Running]:
    async with make_server() as running:
        yield running
