"""Inbound authentication: OpenAI's 401s, every key compared, the keys file reloaded."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from diglot.proxy import auth
from diglot.proxy.auth import ClientKeys
from diglot.proxy.config import ConfigError, load_config
from diglot.proxy.service import reload
from fixtures.fake_chat_upstream import FakeUpstream, Reply, completion
from tests.conftest import MakeProxy

BODY = {"model": "m", "input": "hi"}
BASE_CONFIG = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}
MISSING = {
    "error": {
        "message": "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
INCORRECT = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_no_key_is_a_401_in_openai_shape(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    client = await make_proxy(client_api_keys=("k1",))
    resp = await client.post("/v1/responses", json=BODY)
    assert resp.status == 401
    assert await resp.json() == MISSING
    assert resp.headers["x-request-id"].startswith("req_")
    assert fake.received == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer nope", INCORRECT),
        ("Bearer k1x", INCORRECT),
        ("bearer K1", INCORRECT),
        ("Basic azE=", MISSING),
        ("Bearer ", MISSING),
    ],
)
async def test_a_wrong_key_is_a_401(
    make_proxy: MakeProxy, fake: FakeUpstream, header: str, expected: dict[str, object]
) -> None:
    client = await make_proxy(client_api_keys=("k1",))
    resp = await client.get("/v1/models", headers={"Authorization": header})
    assert resp.status == 401
    assert await resp.json() == expected
    assert fake.received == []


async def test_any_configured_key_gets_in_and_is_forwarded(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("a")), Reply(completion("b")))
    client = await make_proxy(client_api_keys=("k1", "k2"))
    for key in ("k1", "k2"):
        resp = await client.post("/v1/responses", json=BODY, headers=bearer(key))
        assert resp.status == 200
    assert [r.headers["Authorization"] for r in fake.received] == ["Bearer k1", "Bearer k2"]


async def test_the_upstream_key_replaces_the_client_key(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("a")))
    client = await make_proxy(client_api_keys=("client",), upstream_api_key="backend")
    resp = await client.post("/v1/responses", json=BODY, headers=bearer("client"))
    assert resp.status == 200
    assert fake.last.headers["Authorization"] == "Bearer backend"


async def test_health_endpoints_need_no_key(make_proxy: MakeProxy) -> None:
    client = await make_proxy(client_api_keys=("k1",))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_without_keys_nothing_is_required(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("a")))
    client = await make_proxy()
    assert (await client.post("/v1/responses", json=BODY)).status == 200


def test_every_key_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = ClientKeys(["first", "second", "third"], None)
    assert keys.accepts("first")
    assert len(compared) == 3
    assert {len(a) for a, _ in compared} | {len(b) for _, b in compared} == {32}  # equal lengths
    compared.clear()
    assert not keys.accepts("nope")
    assert len(compared) == 3


def write_keys(path: Path, *keys: str) -> None:
    path.write_text("# client keys\n\n" + "".join(f"  {key}  \n" for key in keys))


async def test_keys_file_is_read_and_reloaded(
    make_proxy: MakeProxy, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.responder = lambda _: Reply(completion("ok"))
    path = tmp_path / "keys"
    write_keys(path, "old")
    client = await make_proxy(client_api_keys=("fixed",), client_api_keys_file=str(path))
    assert (await client.get("/v1/models", headers=bearer("old"))).status == 200
    assert (await client.get("/v1/models", headers=bearer("# client keys"))).status == 401
    write_keys(path, "new")
    assert (await client.get("/v1/models", headers=bearer("new"))).status == 401
    reload(client.app)
    assert (await client.get("/v1/models", headers=bearer("new"))).status == 200
    assert (await client.get("/v1/models", headers=bearer("old"))).status == 401
    assert (await client.get("/v1/models", headers=bearer("fixed"))).status == 200
    path.unlink()
    reload(client.app)  # an unreadable file keeps the keys already loaded
    assert (await client.get("/v1/models", headers=bearer("new"))).status == 200


async def test_an_empty_keys_file_lets_nobody_in(make_proxy: MakeProxy, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("")
    client = await make_proxy(client_api_keys_file=str(path))
    assert (await client.get("/v1/models", headers=bearer(""))).status == 401
    assert (await client.get("/v1/models", headers=bearer("anything"))).status == 401


def test_a_keys_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_bytes(b"\xff\xfe\x00key")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config({**BASE_CONFIG, "client_api_keys_file": str(path)}, {})


def test_a_reload_that_meets_binary_keeps_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("good\n")
    keys = ClientKeys([], str(path))
    path.write_bytes(b"\xff\xfe\x00key")
    keys.reload()
    assert keys.accepts("good")
