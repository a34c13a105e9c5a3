"""Shared test wiring: a scriptable fake upstream and diglot in front of it, all on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from diglot.proxy.app import create_app
from diglot.proxy.config import Config
from fixtures.fake_chat_upstream import FakeUpstream

MakeProxy = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
MakeServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def fake_server(aiohttp_server: Any, fake: FakeUpstream) -> TestServer:
    server: TestServer = await aiohttp_server(fake.app())
    return server


def proxy_config(upstream: str, api: str = "chat", **overrides: Any) -> Config:
    """Stored responses in memory and a fixed seal key: tests write nothing to disk."""
    settings = {"store": "memory://", "seal_key": "test seal key", **overrides}
    return Config(upstream=upstream, upstream_api=api, **settings)  # type: ignore[arg-type]


@pytest.fixture
def make_proxy(aiohttp_client: Any, aiohttp_server: Any, fake_server: TestServer) -> MakeProxy:
    """diglot in front of the fake upstream, as an aiohttp test client."""

    async def make(api: str = "chat", **overrides: Any) -> TestClient[web.Request, web.Application]:
        config = proxy_config(str(fake_server.make_url("/v1")), api, **overrides)
        server = await aiohttp_server(create_app(config), auto_decompress=False)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
        return client

    return make


@pytest.fixture
def make_proxy_server(aiohttp_server: Any, fake_server: TestServer) -> MakeServer:
    """diglot in front of the fake upstream on a real port (for the openai SDK)."""

    async def make(api: str = "chat", **overrides: Any) -> TestServer:
        config = proxy_config(str(fake_server.make_url("/v1")), api, **overrides)
        server: TestServer = await aiohttp_server(create_app(config), auto_decompress=False)
        return server

    return make


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (the OS does not hand it out again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
