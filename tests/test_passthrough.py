"""Same shape on both sides: bodies and stream bytes relayed untouched, as they arrive."""

from __future__ import annotations

import asyncio
import gzip
from typing import TYPE_CHECKING

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from fixtures.fake_chat_upstream import FakeUpstream, Hang, Reply, StreamReply, completion, sse
from fixtures.fake_chat_upstream import text_chunks as chat_chunks
from fixtures.fake_responses_upstream import response_events, response_object

CHAT_BODY = b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"top_k": 3}'
if TYPE_CHECKING:
    from tests.conftest import MakeProxy

RESPONSES_BODY = b'{"model":"fake-model","input":"hi","store":false, "x-extra":[1,2]}'


@pytest.mark.parametrize("prefix", ["/v1", ""])
async def test_chat_non_stream_is_byte_identical(
    make_proxy: MakeProxy, fake: FakeUpstream, prefix: str
) -> None:
    answer = orjson.dumps(completion("Hello"), option=orjson.OPT_INDENT_2) + b"\n"
    fake.script(Reply(answer, headers={"X-Backend": "fake"}))
    client = await make_proxy("chat")
    resp = await client.post(
        prefix + "/chat/completions", data=CHAT_BODY, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200
    assert await resp.read() == answer
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Backend"] == "fake"
    assert fake.last.method == "POST"
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.body == CHAT_BODY


async def test_chat_stream_is_byte_identical(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    parts = [*chat_chunks("Hel", "lo"), b": keep-alive comment\r\n\r\n"]
    fake.script(StreamReply(parts))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=CHAT_BODY)
    expected = b"".join(p if isinstance(p, bytes) else sse(p) for p in parts) + b"data: [DONE]\n\n"
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await resp.read() == expected


async def test_stream_bytes_arrive_before_the_upstream_finishes(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    parts = chat_chunks("first", "second")
    fake.script(StreamReply(parts, hold=release, hold_after=2))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=CHAT_BODY)
    head = sse(parts[0]) + sse(parts[1])  # type: ignore[arg-type]
    received = b""
    while len(received) < len(head):
        received += await asyncio.wait_for(resp.content.readany(), 5)
    assert received == head
    assert fake.parts_sent == 2
    release.set()
    rest = await resp.read()
    assert rest.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("prefix", ["/v1", ""])
async def test_responses_passthrough_non_stream(
    make_proxy: MakeProxy, fake: FakeUpstream, prefix: str
) -> None:
    answer = orjson.dumps(response_object("Hi there"))
    fake.script(Reply(answer))
    client = await make_proxy("responses")
    resp = await client.post(prefix + "/responses", data=RESPONSES_BODY)
    assert resp.status == 200
    assert await resp.read() == answer
    assert fake.last.path == "/v1/responses"
    assert fake.last.body == RESPONSES_BODY


async def test_responses_passthrough_stream(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    events = response_events("Hi", " there")
    fake.script(StreamReply(events, done=False))
    client = await make_proxy("responses")
    resp = await client.post("/v1/responses", data=RESPONSES_BODY)
    assert await resp.read() == b"".join(events)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
async def test_models_are_proxied_with_the_query(
    make_proxy: MakeProxy, fake: FakeUpstream, path: str
) -> None:
    listing = b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}'
    fake.script(Reply(listing))
    client = await make_proxy("chat")
    resp = await client.get(path + "?limit=5")
    assert resp.status == 200
    assert await resp.read() == listing
    assert (fake.last.method, fake.last.path, fake.last.query) == ("GET", "/v1/models", "limit=5")
    assert fake.last.body == b""


async def test_client_disconnect_cancels_the_upstream_stream(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    never = asyncio.Event()
    fake.script(StreamReply(chat_chunks("a", "b"), hold=never, hold_after=1))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=CHAT_BODY)
    assert await asyncio.wait_for(resp.content.readany(), 5)
    resp.close()
    await asyncio.wait_for(fake.cancelled.wait(), 5)


async def test_client_disconnect_cancels_a_pending_upstream_request(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Hang())
    client = await make_proxy("chat")
    request = asyncio.create_task(client.post("/v1/chat/completions", data=CHAT_BODY))
    await asyncio.wait_for(fake.arrived.wait(), 5)
    request.cancel()
    await asyncio.wait_for(fake.cancelled.wait(), 5)


async def test_upstream_break_mid_body_is_not_passed_off_as_complete(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(chat_chunks("a"), then="drop"))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=CHAT_BODY)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_compressed_upstream_answer_reaches_the_client_decoded(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    answer = orjson.dumps(completion("squeezed"))
    fake.script(Reply(gzip.compress(answer), headers={"Content-Encoding": "gzip"}))
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=CHAT_BODY, auto_decompress=False)
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == answer


async def test_log_bodies_logs_the_request_body_only_when_asked(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("ok")), Reply(completion("ok")))
    quiet, loud = await make_proxy("chat"), await make_proxy("chat", log_bodies=True)
    with capture_logs() as logs:
        await quiet.post("/v1/chat/completions", data=CHAT_BODY)
    assert [entry["event"] for entry in logs] == ["request"]
    with capture_logs() as logs:
        await loud.post("/v1/chat/completions", data=CHAT_BODY)
    assert logs[0]["event"] == "request_body"
    assert logs[0]["body"] == CHAT_BODY.decode()


async def test_a_sized_answer_cut_short_is_a_502_not_a_truncated_200(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        StreamReply(
            [b'{"id": "chatcmpl-1", "object": '],
            done=False,
            then="drop",
            headers={"Content-Type": "application/json", "Content-Length": "200"},
        )
    )
    proxy = await make_proxy("chat")
    resp = await proxy.post("/v1/chat/completions", data=b'{"model": "m", "messages": []}')
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")


PASSTHROUGHS = [
    ("chat", "/v1/chat/completions", CHAT_BODY),
    ("responses", "/v1/responses", RESPONSES_BODY),
]
# OpenAI's shape, but spaced, ordered and extended as no encoder of diglot's would write it.
OPENAI_ERROR = (
    '{ "error" : {"code":"model_busy" , "param":null,\n  "message": "Café \\u00e9 \U0001f525 busy",'
    '"type":"server_error", "retry": [1, 2.50]},\t"request_id":"up-1" }\n'
).encode()


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
@pytest.mark.parametrize(("api", "path", "body"), PASSTHROUGHS, ids=["chat", "responses"])
async def test_an_openai_shaped_upstream_error_is_relayed_byte_for_byte(
    make_proxy: MakeProxy, fake: FakeUpstream, api: str, path: str, body: bytes, status: int
) -> None:
    headers = {"Retry-After": "2", "X-Backend": "fake"}
    fake.script(Reply(OPENAI_ERROR, status, headers, content_type="application/problem+json"))
    client = await make_proxy(api)
    resp = await client.post(path, data=body, headers={"X-Request-Id": "err-1"})
    assert resp.status == status
    assert await resp.read() == OPENAI_ERROR
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.headers["Content-Length"] == str(len(OPENAI_ERROR))
    assert (resp.headers["Retry-After"], resp.headers["X-Backend"]) == ("2", "fake")
    assert resp.headers["X-Request-Id"] == "err-1"


@pytest.mark.parametrize(
    ("payload", "message", "code"),
    [
        ({"error": {"code": 400, "message": "context too long"}}, "context too long", None),
        ({"error": {"message": "slow", "type": 7}}, "slow", None),
        ({"error": "model 'x' not found"}, "model 'x' not found", None),
        ({"object": "error", "message": "no such model", "code": 404}, "no such model", None),
        ({"detail": "bad input"}, "bad input", None),
        ({"error": {"type": "invalid_request_error"}}, "The upstream returned HTTP 400.", None),
    ],
    ids=["llama.cpp", "wrong-type", "ollama", "vllm", "fastapi", "no-message"],
)
@pytest.mark.parametrize(("api", "path", "body"), PASSTHROUGHS, ids=["chat", "responses"])
async def test_other_upstream_error_shapes_are_normalised_in_passthrough(
    make_proxy: MakeProxy,
    fake: FakeUpstream,
    api: str,
    path: str,
    body: bytes,
    payload: dict[str, object],
    message: str,
    code: str | None,
) -> None:
    fake.script(Reply(payload, 400, {"X-Backend": "fake"}))
    client = await make_proxy(api)
    resp = await client.post(path, data=body)
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert "X-Backend" not in resp.headers
    expected = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    assert await resp.json() == {"error": expected}
