"""Several upstreams: each request goes where its model routes, translated or passed through as
that upstream's API needs; aliases, /v1/models, auto detection, stored responses across
upstreams, and the [[upstreams]] configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from diglot.proxy import routing
from diglot.proxy.app import create_app
from diglot.proxy.cli import main
from diglot.proxy.config import Config, ConfigError, load_config
from diglot.proxy.routing import ModelRenamer
from diglot.proxy.state import PROXY
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    Script,
    StreamReply,
    chunk,
    completion,
    sse,
)
from fixtures.fake_responses_upstream import framed, message_item, response, stream_events

Client = TestClient[web.Request, web.Application]
Serve = Callable[[FakeUpstream], Awaitable[str]]
JSON = {"Content-Type": "application/json"}
QWEN = {"name": "qwen", "api": "chat", "models": ["qwen3-*"]}
QWEN_ALIASES = {"gpt-5-codex": "qwen3-coder-30b"}
HOSTED = {"name": "hosted", "api": "responses", "models": ["*"]}
HOSTED_ALIASES = {"o-mini": "hosted-mini"}


def upstreams_config(*tables: dict[str, Any], **settings: Any) -> Config:
    """[[upstreams]] as the config file gives them; nothing written to disk."""
    given = {"upstreams": list(tables), "store": "memory://", "seal_key": "test seal key"}
    return load_config({**given, **settings}, {})


@pytest.fixture
def serve(aiohttp_server: Any) -> Serve:
    """A fake upstream on its own port; its base URL."""

    async def start(fake: FakeUpstream) -> str:
        server: TestServer = await aiohttp_server(fake.app())
        return str(server.make_url("/v1"))

    return start


@pytest.fixture
def proxy_over(aiohttp_server: Any, aiohttp_client: Any) -> Callable[..., Awaitable[Client]]:
    """diglot in front of the upstreams these tables name."""

    async def start(*tables: dict[str, Any], **settings: Any) -> Client:
        app = create_app(upstreams_config(*tables, **settings))
        server = await aiohttp_server(app, auto_decompress=False)
        client: Client = await aiohttp_client(server)
        return client

    return start


def chat_answer(text: str) -> Callable[[Received], Script]:
    """A chat backend answering with `text` under the model name it was sent."""

    def answer(received: Received) -> Script:
        body = received.json()
        model = body["model"]
        if not body.get("stream"):
            return Reply(completion(text, model=model))
        parts: list[dict[str, Any] | bytes] = [
            chunk({"role": "assistant", "content": ""}, model=model),
            chunk({"content": text}, model=model),
            chunk({}, "stop", model=model),
        ]
        return StreamReply(parts)

    return answer


def responses_answer(text: str) -> Callable[[Received], Script]:
    """A Responses backend answering with `text` under the model name it was sent."""

    def answer(received: Received) -> Script:
        body = received.json()
        final = response(message_item(text), model=body["model"])
        if not body.get("stream"):
            return Reply(final)
        return StreamReply(framed(stream_events(final)), done=False)

    return answer


def events_of(payload: bytes) -> list[dict[str, Any]]:
    """The JSON of every `data:` line of an event stream but [DONE]."""
    lines = [line[6:] for line in payload.split(b"\n") if line.startswith(b"data: ")]
    return [orjson.loads(line) for line in lines if line != b"[DONE]"]


@pytest.fixture
async def two_upstreams(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> tuple[Client, FakeUpstream, FakeUpstream]:
    """qwen3-* and an alias on a chat backend; everything else on a Responses backend."""
    chat, hosted = FakeUpstream(chat_answer("from qwen")), FakeUpstream(responses_answer("hosted"))
    client = await proxy_over(
        {**QWEN, "url": await serve(chat), "aliases": QWEN_ALIASES},
        {**HOSTED, "url": await serve(hosted), "aliases": HOSTED_ALIASES},
    )
    return client, chat, hosted


async def test_a_responses_client_is_translated_for_the_chat_upstream_its_model_matches(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    resp = await client.post("/v1/responses", json={"model": "qwen3-8b", "input": "hi"})
    assert resp.status == 200
    body = await resp.json()
    assert (body["model"], body["output"][0]["content"][0]["text"]) == ("qwen3-8b", "from qwen")
    assert [(r.path, r.json()["model"]) for r in chat.received] == [
        ("/v1/chat/completions", "qwen3-8b")
    ]
    assert hosted.received == []


async def test_an_alias_sends_the_backend_its_name_and_the_client_keeps_its_own(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, _ = two_upstreams
    resp = await client.post("/v1/responses", json={"model": "gpt-5-codex", "input": "hi"})
    body = await resp.json()
    assert chat.last.json()["model"] == "qwen3-coder-30b"
    assert body["model"] == "gpt-5-codex"
    stored = await (await client.get(f"/v1/responses/{body['id']}")).json()
    assert stored["model"] == "gpt-5-codex"
    streamed = {"model": "gpt-5-codex", "input": "hi", "stream": True}
    events = events_of(await (await client.post("/v1/responses", json=streamed)).read())
    assert chat.last.json()["model"] == "qwen3-coder-30b"
    assert [e["type"] for e in events if "response" in e] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert {e["response"]["model"] for e in events if "response" in e} == {"gpt-5-codex"}
    kept = await (await client.get(f"/v1/responses/{events[-1]['response']['id']}")).json()
    assert kept["model"] == "gpt-5-codex"


async def test_a_responses_client_is_passed_through_to_the_responses_upstream(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    raw = b'{"model":"gpt-5","input":"hi","x-extra":[1, 2]}'
    resp = await client.post("/v1/responses", data=raw, headers=JSON)
    assert resp.status == 200
    assert await resp.read() == orjson.dumps(response(message_item("hosted"), model="gpt-5"))
    assert (hosted.last.path, hosted.last.body) == ("/v1/responses", raw)
    assert chat.received == []


async def test_a_passed_through_alias_is_renamed_both_ways(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, _, hosted = two_upstreams
    resp = await client.post("/v1/responses", json={"model": "o-mini", "input": "hi"})
    assert hosted.last.json() == {"model": "hosted-mini", "input": "hi"}
    assert await resp.read() == orjson.dumps(response(message_item("hosted"), model="o-mini"))
    streamed = {"model": "o-mini", "input": "hi", "stream": True}
    resp = await client.post("/v1/responses", json=streamed)
    final = response(message_item("hosted"), model="o-mini")
    parts = framed(stream_events(final))
    assert await resp.read() == b"".join(p if isinstance(p, bytes) else sse(p) for p in parts)


async def test_a_chat_client_is_passed_through_to_the_chat_upstream(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    raw = b'{"model":"qwen3-8b","messages":[{"role":"user","content":"hi"}],"top_k": 3}'
    resp = await client.post("/v1/chat/completions", data=raw, headers=JSON)
    assert await resp.read() == orjson.dumps(completion("from qwen", model="qwen3-8b"))
    assert (chat.last.path, chat.last.body) == ("/v1/chat/completions", raw)
    assert hosted.received == []


async def test_a_chat_client_alias_is_renamed_both_ways_in_passthrough(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, _ = two_upstreams
    messages = [{"role": "user", "content": "hi"}]
    resp = await client.post(
        "/v1/chat/completions", json={"model": "gpt-5-codex", "messages": messages}
    )
    assert chat.last.json() == {"model": "qwen3-coder-30b", "messages": messages}
    assert await resp.read() == orjson.dumps(completion("from qwen", model="gpt-5-codex"))
    streamed = {"model": "gpt-5-codex", "messages": messages, "stream": True}
    resp = await client.post("/v1/chat/completions", json=streamed)
    expected = [
        chunk({"role": "assistant", "content": ""}, model="gpt-5-codex"),
        chunk({"content": "from qwen"}, model="gpt-5-codex"),
        chunk({}, "stop", model="gpt-5-codex"),
    ]
    assert await resp.read() == b"".join(map(sse, expected)) + b"data: [DONE]\n\n"


async def test_a_chat_client_is_translated_for_the_responses_upstream(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    messages = [{"role": "user", "content": "hi"}]
    resp = await client.post("/v1/chat/completions", json={"model": "o-mini", "messages": messages})
    body = await resp.json()
    assert (hosted.last.path, hosted.last.json()["model"]) == ("/v1/responses", "hosted-mini")
    assert (body["model"], body["choices"][0]["message"]["content"]) == ("o-mini", "hosted")
    streamed = {"model": "o-mini", "messages": messages, "stream": True}
    chunks = events_of(await (await client.post("/v1/chat/completions", json=streamed)).read())
    assert {c["model"] for c in chunks} == {"o-mini"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hosted"
    assert chat.received == []


async def test_an_unknown_model_is_404_model_not_found(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> None:
    chat = FakeUpstream(chat_answer("never"))
    client = await proxy_over({**QWEN, "url": await serve(chat)})
    for path, body in (
        ("/v1/responses", {"model": "llama-3", "input": "hi"}),
        ("/v1/chat/completions", {"model": "llama-3", "messages": []}),
    ):
        resp = await client.post(path, json=body)
        assert resp.status == 404
        assert await resp.json() == {
            "error": {
                "message": "The model `llama-3` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        }
    assert chat.received == []


async def test_a_body_without_a_model_is_the_translators_400(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    resp = await client.post("/v1/responses", data=b'{"input": "hi"', headers=JSON)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"
    resp = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "model"
    assert chat.received == hosted.received == []


def models_reply(*names: str) -> Reply:
    return Reply({"object": "list", "data": [model_entry(name, "backend") for name in names]})


def model_entry(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1, "owned_by": owner}


async def test_models_merge_every_upstream_list_with_aliases_each_name_once(
    aiohttp_server: Any,
    proxy_over: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat, hosted = FakeUpstream(), FakeUpstream()
    chat.script(models_reply("qwen3-8b", "qwen3-coder-30b", "other"))
    hosted.script(models_reply("gpt-5", "qwen3-8b"), models_reply("gpt-5", "gpt-5.1"))
    hosted_server: TestServer = await aiohttp_server(hosted.app())
    chat_server: TestServer = await aiohttp_server(chat.app())
    client = await proxy_over(
        {**QWEN, "url": str(chat_server.make_url("/v1")), "aliases": QWEN_ALIASES},
        {**HOSTED, "url": str(hosted_server.make_url("/v1")), "aliases": HOSTED_ALIASES},
    )
    resp = await client.get("/v1/models")
    assert resp.status == 200
    assert await resp.json() == {
        "object": "list",
        "data": [
            model_entry("qwen3-8b", "backend"),
            model_entry("qwen3-coder-30b", "backend"),
            model_entry("gpt-5-codex", "backend"),  # the entry of the model it leads to
            model_entry("gpt-5", "backend"),
            {"id": "o-mini", "object": "model", "created": 0, "owned_by": "hosted"},
        ],
    }
    assert [r.path for r in chat.received + hosted.received] == ["/v1/models", "/v1/models"]
    await client.get("/v1/models")
    assert len(chat.received + hosted.received) == 2  # within MODELS_TTL: the lists kept
    monkeypatch.setattr(routing, "MODELS_TTL", 0.0)
    await chat_server.close()
    resp = await client.get("/v1/models")
    assert resp.status == 200
    names = [entry["id"] for entry in (await resp.json())["data"]]
    assert names == ["qwen3-8b", "qwen3-coder-30b", "gpt-5-codex", "gpt-5", "gpt-5.1", "o-mini"]


async def test_models_with_no_upstream_answering_is_502(
    proxy_over: Callable[..., Awaitable[Client]], free_port: int
) -> None:
    url = f"http://127.0.0.1:{free_port}/v1"
    client = await proxy_over({**HOSTED, "url": url, "aliases": HOSTED_ALIASES})
    resp = await client.get("/v1/models")
    assert resp.status == 502
    assert await resp.json() == {
        "error": {
            "message": "No upstream answered with its list of models.",
            "type": "server_error",
            "param": None,
            "code": "upstream_unreachable",
        }
    }


def only(path: str, answer: Callable[[Received], Script]) -> Callable[[Received], Script]:
    """A backend with one of the two endpoints: the other is a 404, a `{}` body a 400."""

    def reply(received: Received) -> Script:
        if not received.path.endswith(path):
            return Reply({"detail": "Not Found"}, status=404)
        if received.body == b"{}":
            return Reply({"error": {"message": "model is required"}}, status=400)
        return answer(received)

    return reply


async def test_auto_finds_a_chat_only_upstream_and_translates_for_responses_clients(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> None:
    chat = FakeUpstream(only("/chat/completions", chat_answer("auto chat")))
    url = await serve(chat)
    with capture_logs() as logs:
        client = await proxy_over({"name": "local", "url": url, "api": "auto", "models": ["*"]})
    assert [(r.path, r.body) for r in chat.received] == [
        ("/v1/responses", b"{}"),
        ("/v1/chat/completions", b"{}"),
    ]
    detected = [line for line in logs if line["event"] == "upstream_api_detected"]
    assert [(d["upstream"], d["responses"], d["chat"]) for d in detected] == [
        ("local", False, True)
    ]
    resp = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert (await resp.json())["output"][0]["content"][0]["text"] == "auto chat"
    assert chat.last.path == "/v1/chat/completions"
    raw = b'{"model":"m","messages":[]}'
    resp = await client.post("/v1/chat/completions", data=raw, headers=JSON)
    assert (chat.last.body, await resp.read()) == (
        raw,
        orjson.dumps(completion("auto chat", model="m")),
    )


async def test_auto_finds_a_responses_only_upstream_and_translates_for_chat_clients(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> None:
    hosted = FakeUpstream(only("/responses", responses_answer("auto hosted")))
    client = await proxy_over(
        {"name": "h", "url": await serve(hosted), "api": "auto", "models": ["*"]}
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert (await resp.json())["choices"][0]["message"]["content"] == "auto hosted"
    assert hosted.last.path == "/v1/responses"
    raw = b'{"model":"m","input":"hi"}'
    resp = await client.post("/v1/responses", data=raw, headers=JSON)
    assert hosted.last.body == raw
    assert await resp.read() == orjson.dumps(response(message_item("auto hosted"), model="m"))


async def test_auto_asks_again_after_the_upstream_answered_404(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> None:
    both = FakeUpstream(chat_answer("both"))
    client = await proxy_over(
        {"name": "b", "url": await serve(both), "api": "auto", "models": ["*"]}
    )
    assert len(both.received) == 2  # the probes: both answered, so both are spoken
    both.script(Reply({"error": {"message": "gone"}}, status=404))
    resp = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert resp.status == 404
    await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert [(r.path, r.body) for r in both.received[3:5]] == [
        ("/v1/responses", b"{}"),
        ("/v1/chat/completions", b"{}"),
    ]


async def test_an_auto_upstream_down_at_startup_is_a_502_naming_it(
    proxy_over: Callable[..., Awaitable[Client]], free_port: int
) -> None:
    url = f"http://127.0.0.1:{free_port}/v1"
    client = await proxy_over({"name": "later", "url": url, "api": "auto", "models": ["*"]})
    resp = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert resp.status == 502
    assert await resp.json() == {
        "error": {
            "message": "diglot could not find out which API upstream 'later' speaks: none of "
            "its replicas answered.",
            "type": "server_error",
            "param": None,
            "code": "upstream_unreachable",
        }
    }


async def test_a_chain_goes_on_where_its_model_now_routes(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]]
) -> None:
    """Stored responses are shared: the second turn's upstream gets the first turn whole."""
    first, second = FakeUpstream(chat_answer("one")), FakeUpstream(chat_answer("two"))
    client = await proxy_over(
        {"name": "a", "url": await serve(first), "api": "chat", "models": ["a-*"]},
        {"name": "b", "url": await serve(second), "api": "chat", "models": ["b-*"]},
    )
    turn = await (await client.post("/v1/responses", json={"model": "a-1", "input": "hi"})).json()
    follow = {"model": "b-1", "input": "and then?", "previous_response_id": turn["id"]}
    resp = await client.post("/v1/responses", json=follow)
    assert (await resp.json())["output"][0]["content"][0]["text"] == "two"
    assert len(first.received) == 1
    assert second.last.json()["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "and then?"},
    ]


async def test_stored_responses_are_looked_up_here_then_at_the_responses_upstream(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, _, hosted = two_upstreams
    kept = await (
        await client.post("/v1/responses", json={"model": "qwen3-8b", "input": "hi"})
    ).json()
    assert (await (await client.get(f"/v1/responses/{kept['id']}")).json())["id"] == kept["id"]
    assert hosted.received == []
    hosted.script(Reply(response(message_item("theirs"), response_id="resp_theirs")))
    resp = await client.get("/v1/responses/resp_theirs")
    assert (await resp.json())["id"] == "resp_theirs"
    assert (hosted.last.method, hosted.last.path) == ("GET", "/v1/responses/resp_theirs")


async def test_a_websocket_turn_goes_where_its_model_routes(
    two_upstreams: tuple[Client, FakeUpstream, FakeUpstream],
) -> None:
    client, chat, hosted = two_upstreams
    async with client.ws_connect("/v1/responses") as ws:
        for model in ("qwen3-8b", "gpt-5"):
            await ws.send_json({"type": "response.create", "model": model, "input": "hi"})
            while (event := await ws.receive_json())["type"] != "response.completed":
                pass
            assert event["response"]["model"] == model
    assert [r.json()["model"] for r in chat.received] == ["qwen3-8b"]
    assert [r.json()["model"] for r in hosted.received] == ["gpt-5"]


async def test_readyz_lists_every_upstream_and_replica(
    serve: Serve, proxy_over: Callable[..., Awaitable[Client]], free_port: int
) -> None:
    url = await serve(FakeUpstream())
    client = await proxy_over(
        {**QWEN, "urls": [url, f"http://127.0.0.1:{free_port}/v1"]}, {**HOSTED, "url": url}
    )
    resp = await client.get("/readyz")
    assert resp.status == 200
    live = url.removeprefix("http://").removesuffix("/v1")
    assert await resp.json() == {
        "status": "ready",
        "checks": {"upstream qwen": "ok", "upstream hosted": "ok", "store": "ok"},
        "upstreams": {
            "qwen": {live: "up", f"127.0.0.1:{free_port}": "down"},
            "hosted": {live: "up"},
        },
    }


async def test_readyz_is_not_ready_while_an_upstream_has_no_live_replica(
    proxy_over: Callable[..., Awaitable[Client]], free_port: int
) -> None:
    client = await proxy_over({**HOSTED, "url": f"http://127.0.0.1:{free_port}/v1"})
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["reason"].startswith(
        f"upstream hosted: no live replica: upstream 127.0.0.1:{free_port} is unreachable: "
    )
    assert body["upstreams"] == {"hosted": {f"127.0.0.1:{free_port}": "down"}}


def test_model_renamer_renames_across_chunk_boundaries() -> None:
    renamer = ModelRenamer("back/end", "client")
    stream = b'data: {"model": "back/end","x":1}\n\ndata: {"model":"back\\/end"}\n\n'
    pieces = [stream[:9], stream[9:20], stream[20:]]
    out = b"".join(renamer.feed(piece) for piece in pieces) + renamer.end()
    assert out == b'data: {"model": "client","x":1}\n\ndata: {"model":"back\\/end"}\n\n'


# --- configuration ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "diglot.toml"
    path.write_text(text)
    return str(path)


ISSUE_EXAMPLE = """
[[upstreams]]
name = "qwen"
urls = ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"]
api = "chat"
models = ["qwen3-*", "qwen-coder"]
aliases = { "gpt-5-codex" = "qwen3-coder-30b" }
api_key = "backend key"
read-timeout = 30

[[upstreams]]
name = "hosted"
url = "https://responses-only.example/v1"
api = "responses"
models = ["*"]
"""


def test_upstream_tables_from_the_config_file(tmp_path: Path) -> None:
    config = load_config({"config": write(tmp_path, ISSUE_EXAMPLE)}, {"DIGLOT_READ_TIMEOUT": "99"})
    qwen, hosted = config.upstream_settings()
    assert (qwen.name, qwen.urls, qwen.api, qwen.models) == (
        "qwen",
        ("http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"),
        "chat",
        ("qwen3-*", "qwen-coder"),
    )
    assert (qwen.aliases, qwen.api_key, qwen.read_timeout) == (QWEN_ALIASES, "backend key", 30.0)
    assert (hosted.urls, hosted.api_key, hosted.read_timeout) == (
        ("https://responses-only.example/v1",),
        None,
        99.0,  # the global setting
    )
    assert (config.upstream, config.upstream_api) == ("http://10.0.0.5:8000/v1", "chat")


def test_the_one_upstream_flags_are_one_upstream_for_every_model() -> None:
    config = load_config({"upstream": "http://h:1/v1", "upstream_api": "responses"}, {})
    (only_one,) = config.upstream_settings()
    assert (only_one.name, only_one.urls, only_one.api) == (
        "default",
        ("http://h:1/v1",),
        "responses",
    )
    assert (only_one.models, only_one.aliases) == (("*",), {})


def test_upstreams_as_json_in_the_environment() -> None:
    tables = [{"name": "a", "url": "http://a:1/v1", "api": "auto", "models": ["*"]}]
    config = load_config({}, {"DIGLOT_UPSTREAMS": orjson.dumps(tables).decode()})
    assert [(u.name, u.api) for u in config.upstream_settings()] == [("a", "auto")]


def test_upstreams_that_are_not_json_are_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({}, {"DIGLOT_UPSTREAMS": '[{"api_key": "sk-secret", oops}]'})
    assert str(caught.value).startswith("invalid setting upstreams: not valid JSON (")
    assert "sk-secret" not in str(caught.value)


TABLE = 'name = "q"\nurl = "http://q:1/v1"\napi = "chat"\nmodels = ["q-*"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("upstreams = []\n", "upstreams: expected one or more [[upstreams]] tables"),
        (
            '[[upstreams]]\nname = "q"\napi = "chat"\nmodels = ["*"]\n',
            "upstreams[0].url: give either url (one replica) or urls (several)",
        ),
        (
            '[[upstreams]]\nname = "q"\nurl = "http://q:1/v1"\napi = "chat"\nmodels = ["q[3-*"]\n',
            "upstreams[0].models: 'q[3-*' is not a model pattern: a [ has no closing ]",
        ),
        (
            f"[[upstreams]]\n{TABLE}[[upstreams]]\n{TABLE}",
            "upstreams[1].name: 'q' names two upstreams",
        ),
        (
            f'[[upstreams]]\n{TABLE}aliases = {{ "gpt-5" = "llama-3" }}\n',
            "upstreams[0].aliases: 'gpt-5' leads to 'llama-3', which none of this upstream's "
            "models match",
        ),
        (
            f"[[upstreams]]\n{TABLE}model = 1\n",
            "upstreams[0].model: unknown key; did you mean models?",
        ),
        (
            f"[[upstreams]]\n{TABLE.replace('chat', 'completions')}",
            "upstreams[0].api: 'completions' is not one of chat, responses, auto",
        ),
        (
            f'upstream = "http://h:1/v1"\n[[upstreams]]\n{TABLE}',
            "upstreams: give either upstream and upstream_api (one upstream) or [[upstreams]] "
            "tables",
        ),
    ],
)
def test_a_bad_upstream_table_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config({"config": path}, {})
    assert str(caught.value) == f"invalid setting {message}"
    assert main(["--config", path]) == 2
    assert capsys.readouterr().err == f"diglot: error: invalid setting {message}\n"


def test_routing_is_by_alias_then_first_matching_pattern() -> None:
    config = upstreams_config(
        {"name": "a", "url": "http://a:1/v1", "api": "chat", "models": ["qwen3-*", "x"]},
        {"name": "b", "url": "http://b:1/v1", "api": "chat", "models": ["*"],
         "aliases": {"qwen3-alias": "b-model"}},
    )  # fmt: skip
    router = create_app(config)[PROXY].router
    a, b = router.pools
    assert [router.route(name) for name in ("qwen3-8b", "x", "xy", "qwen3-alias")] == [
        (a, None),
        (a, None),
        (b, None),
        (b, "b-model"),
    ]
