"""Headers: what goes up, what comes down, the API key, hop-by-hop stripping, x-request-id."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from diglot.proxy.app import create_app
from fixtures.fake_chat_upstream import FakeUpstream, Reply, completion
from tests.conftest import proxy_config

if TYPE_CHECKING:
    from aiohttp.test_utils import TestServer

    from tests.conftest import MakeProxy

BODY = b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}'
MINTED = re.compile(r"req_[0-9a-f]{48}")


async def post(
    make_proxy: MakeProxy, fake: FakeUpstream, headers: dict[str, str], **config: object
):
    fake.script(Reply(completion("ok")))
    client = await make_proxy("chat", **config)
    return await client.post("/v1/chat/completions", data=BODY, headers=headers)


async def test_end_to_end_headers_are_forwarded(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    headers = {
        "Authorization": "Bearer client-key",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj-1",
        "session-id": "s-1",
        "x-codex-turn": "7",
        "User-Agent": "codex/0.169",
        "Content-Type": "application/json",
    }
    await post(make_proxy, fake, headers)
    got = fake.last.headers
    for key, value in headers.items():
        assert got[key] == value
    assert got["Accept-Encoding"] == "identity"


async def test_upstream_api_key_replaces_the_clients(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    await post(make_proxy, fake, {"authorization": "Bearer client-key"}, upstream_api_key="sk-up")
    assert fake.last.headers.getall("Authorization") == ["Bearer sk-up"]


async def test_hop_by_hop_headers_are_stripped_going_up(
    make_proxy: MakeProxy, fake: FakeUpstream, fake_server: TestServer
) -> None:
    headers = {
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eA==",
        "Upgrade": "h2c",
        "X-Kept": "yes",
    }
    await post(make_proxy, fake, headers)
    got = fake.last.headers
    for name in ("X-Hop", "Keep-Alive", "TE", "Proxy-Authorization", "Upgrade"):
        assert name not in got
    assert got["X-Kept"] == "yes"
    assert got["Host"] == f"127.0.0.1:{fake_server.port}"


async def test_hop_by_hop_headers_are_stripped_coming_down(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(
            completion("ok"),
            headers={"Proxy-Authenticate": "Basic", "X-Backend": "b", "Upgrade": "h2c"},
        )
    )
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=BODY)
    assert resp.headers["X-Backend"] == "b"
    assert "Proxy-Authenticate" not in resp.headers
    assert "Upgrade" not in resp.headers


async def test_client_request_id_is_propagated_both_ways(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    resp = await post(make_proxy, fake, {"X-Request-Id": "abc-123"})
    assert fake.last.headers.getall("X-Request-Id") == ["abc-123"]
    assert resp.headers["X-Request-Id"] == "abc-123"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "bad id\twith spaces"])
async def test_request_id_is_minted_when_missing_or_unusable(
    make_proxy: MakeProxy, fake: FakeUpstream, given: str | None
) -> None:
    resp = await post(make_proxy, fake, {} if given is None else {"X-Request-Id": given})
    minted = resp.headers["X-Request-Id"]
    assert MINTED.fullmatch(minted)
    assert fake.last.headers.getall("X-Request-Id") == [minted]


async def test_upstream_request_id_does_not_replace_ours(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("ok"), headers={"X-Request-Id": "upstream-id"}))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=BODY, headers={"X-Request-Id": "ours"})
    assert resp.headers.getall("X-Request-Id") == ["ours"]


async def test_error_answers_carry_the_request_id(make_proxy: MakeProxy) -> None:
    client = await make_proxy("chat")
    resp = await client.post("/v1/nowhere", headers={"X-Request-Id": "err-1"})
    assert resp.status == 404
    assert resp.headers["X-Request-Id"] == "err-1"


async def test_an_upstream_cookie_never_reaches_another_clients_request(
    aiohttp_client: Any, aiohttp_server: Any, fake: FakeUpstream, fake_server: TestServer
) -> None:
    """The upstream pool is shared by every client: a cookie one answer sets is that client's
    (it is relayed down to it), never sent up again with someone else's request."""
    # By a host name: aiohttp's default cookie jar ignores the cookies of an IP address.
    upstream = f"http://localhost:{fake_server.port}/v1"
    server = await aiohttp_server(create_app(proxy_config(upstream)), auto_decompress=False)
    client = await aiohttp_client(server)
    fake.script(Reply(completion("one"), headers={"Set-Cookie": "affinity=alice; Path=/"}))
    first = await client.post("/v1/chat/completions", data=BODY)
    assert first.status == 200
    assert first.headers["Set-Cookie"] == "affinity=alice; Path=/"
    client.session.cookie_jar.clear()  # from here on, other clients
    fake.script(Reply(completion("two")))
    await client.post("/v1/chat/completions", data=BODY, headers={"Cookie": "mine=bob"})
    assert fake.last.headers.getall("Cookie") == ["mine=bob"]
    fake.script(Reply(completion("three")))
    await client.post("/v1/chat/completions", data=BODY)
    assert "Cookie" not in fake.last.headers
