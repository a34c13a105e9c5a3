"""GET /healthz and GET /readyz: alive, ready, and not ready with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from diglot.proxy.app import create_app
from diglot.proxy.health import READINESS
from diglot.proxy.state import PROXY
from fixtures.fake_chat_upstream import FakeUpstream
from tests.conftest import MakeProxy, proxy_config


async def test_healthz_answers_without_the_upstream(aiohttp_client: Any, free_port: int) -> None:
    app = create_app(proxy_config(f"http://127.0.0.1:{free_port}/v1"))
    client = await aiohttp_client(app)
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_is_ready_when_the_upstream_listens(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    client = await make_proxy()
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) >= {"upstream"}
    assert set(body["checks"].values()) == {"ok"}
    assert fake.received == []  # a TCP connect, not a request the backend has to answer


async def test_readyz_names_an_unreachable_upstream(aiohttp_client: Any, free_port: int) -> None:
    app = create_app(proxy_config(f"http://127.0.0.1:{free_port}/v1"))
    client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not ready"
    assert body["reason"].startswith(f"upstream: upstream 127.0.0.1:{free_port} is unreachable: ")
    assert body["checks"]["upstream"] != "ok"


async def test_readyz_result_is_cached_briefly(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    readiness = client.app[READINESS]
    calls: list[str] = []

    async def counted() -> str | None:
        calls.append("upstream")
        return None

    readiness.checks["upstream"] = counted
    for _ in range(3):
        assert (await client.get("/readyz")).status == 200
    assert calls == ["upstream"]


async def test_readyz_reports_an_unusable_store(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    store = getattr(client.app[PROXY], "store", None)
    if store is None:
        pytest.skip("this build wires no store")
    await store.close()  # a closed store answers StoreUnavailable
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["reason"].startswith("store: store unusable: ")
    assert body["checks"]["upstream"] == "ok"


async def test_readyz_is_not_ready_while_draining(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    client.app[READINESS].draining = True
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"status": "not ready", "reason": "shutting down"}


async def test_health_routes_answer_head(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    assert (await client.head("/healthz")).status == 200


def test_routes_are_registered_once() -> None:
    app = create_app(proxy_config("http://127.0.0.1:1/v1"))
    routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource]
    for path in ("/healthz", "/readyz"):
        assert sorted(method for method, canonical in routes if canonical == path) == [
            "*",  # any other method: a 405 in OpenAI's shape
            "GET",
            "HEAD",
        ]
    assert isinstance(app, web.Application)
