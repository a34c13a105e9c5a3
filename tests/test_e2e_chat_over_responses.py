"""The real openai and openai-agents clients talking Chat Completions to diglot over a
Responses-only fake upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import openai
import orjson
import pytest
from agents import OpenAIChatCompletionsModel
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from diglot.proxy.app import create_app
from diglot.proxy.config import Config
from fixtures.fake_chat_upstream import Hang, Received, Script
from fixtures.fake_responses_upstream import (
    FakeUpstream,
    Reply,
    StreamReply,
    framed,
    function_call_item,
    message_item,
    reasoning_item,
    response,
    responses_stream,
    stream_events,
    usage,
)
from tests.validate import (
    assert_valid_chat_chunk,
    assert_valid_chat_completion,
    assert_valid_stream,
)
from tests.weather import run_weather_agent

if TYPE_CHECKING:
    from tests.conftest import MakeProxy, MakeServer

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_PARAMETERS,
        "strict": True,
    },
}
HI = [{"role": "user", "content": "hi"}]


class CountingUpstream(FakeUpstream):
    """The fake, also counting the requests it was cancelled in the middle of."""

    def __init__(self) -> None:
        super().__init__()
        self.cancellations = 0
        self.all_cancelled = asyncio.Event()
        self.expected_cancellations = 1

    async def _answer(self, request: web.Request, script: Script) -> web.StreamResponse:
        try:
            return await super()._answer(request, script)
        except asyncio.CancelledError:
            self.cancellations += 1
            if self.cancellations >= self.expected_cancellations:
                self.all_cancelled.set()
            raise


@pytest.fixture
def fake() -> CountingUpstream:
    return CountingUpstream()


@pytest.fixture
async def client(make_proxy_server: MakeServer) -> AsyncIterator[AsyncOpenAI]:
    server = await make_proxy_server("responses")
    openai_client = AsyncOpenAI(
        base_url=str(server.make_url("/v1")), api_key="sk-test", max_retries=0
    )
    yield openai_client
    await openai_client.close()


def chat_chunks(raw: bytes) -> list[dict[str, Any]]:
    """Chat framing, strictly: `data: <json>` and a blank line each, `data: [DONE]` last."""
    assert b"\r" not in raw and raw.endswith(b"data: [DONE]\n\n")
    blocks = raw.split(b"\n\n")[:-1]
    assert blocks[-1] == b"data: [DONE]"
    chunks = []
    for block in blocks[:-1]:
        assert block.startswith(b"data: ") and b"\n" not in block
        chunks.append(orjson.loads(block.removeprefix(b"data: ")))
    return chunks


def assert_valid_chat_stream(chunks: list[dict[str, Any]]) -> None:
    """Every chunk valid and of one completion: same id, created and model throughout."""
    for chunk in chunks:
        assert_valid_chat_chunk(chunk)
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")


def deltas(chunks: list[dict[str, Any]], key: str, index: int = 0) -> list[Any]:
    return [
        choice["delta"][key]
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["index"] == index and key in choice["delta"]
    ]


def test_the_fake_streams_follow_the_responses_grammar() -> None:
    final = response(
        reasoning_item("Thinking."),
        message_item("Hello", " world"),
        function_call_item("call_1", "get_weather", '{"city":"Paris"}'),
    )
    events = [orjson.loads(part.split(b"\ndata: ")[1]) for part in framed(stream_events(final))]
    assert assert_valid_stream(events) == final


async def test_create_text(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(response(message_item("Hello there!"), usage_=usage(12, 3))))
    raw = await client.chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}],
        temperature=0.5,
        max_completion_tokens=50,
    )
    body = orjson.loads(raw.content)
    assert_valid_chat_completion(body)
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "fake-model"
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.content == "Hello there!"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    assert completion.usage.total_tokens == 15
    assert raw.headers["x-request-id"] == fake.last.headers["x-request-id"]
    assert "x-diglot-dropped-params" not in raw.headers
    assert fake.last.path == "/v1/responses"
    assert fake.last.headers["Authorization"] == "Bearer sk-test"
    assert fake.last.json() == {
        "model": "fake-model",
        "input": [
            {"type": "message", "role": "system", "content": "Be brief"},
            {"type": "message", "role": "user", "content": "Say hi"},
        ],
        "temperature": 0.5,
        "max_output_tokens": 50,
        "store": False,
    }


async def test_create_with_tools_and_their_results(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    calls = [
        function_call_item("call_p", "get_weather", '{"city":"Paris"}'),
        function_call_item("call_r", "get_weather", '{"city":"Rome"}'),
    ]
    fake.script(Reply(response(*calls)))
    raw = await client.chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Weather in Paris and Rome?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    assert_valid_chat_completion(orjson.loads(raw.content))
    [choice] = raw.parse().choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert [
        (c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
        for c in choice.message.tool_calls
    ] == [
        ("call_p", "get_weather", '{"city":"Paris"}'),
        ("call_r", "get_weather", '{"city":"Rome"}'),
    ]
    assert fake.last.json() == {
        "model": "fake-model",
        "input": [
            {"type": "message", "role": "user", "content": "Weather in Paris and Rome?"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER_PARAMETERS,
                "strict": True,
            }
        ],
        "tool_choice": "auto",
        "store": False,
    }
    fake.script(Reply(response(message_item("Paris sunny, Rome rainy."))))
    assistant = choice.message.model_dump(exclude_none=True)
    await client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            assistant,  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_p", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_r", "content": "rainy"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    sent = fake.last.json()["input"]
    assert [item["type"] for item in sent] == [
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in sent[1:3]] == [
        ("call_p", "get_weather", '{"city":"Paris"}'),
        ("call_r", "get_weather", '{"city":"Rome"}'),
    ]
    assert sent[3:] == [
        {"type": "function_call_output", "call_id": "call_p", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_r", "output": "rainy"},
    ]


@pytest.mark.parametrize("reasoning_content", [True, False])
async def test_reasoning_content_and_detailed_usage(
    make_proxy_server: MakeServer, fake: FakeUpstream, reasoning_content: bool
) -> None:
    server = await make_proxy_server("responses", chat_reasoning_content=reasoning_content)
    openai_client = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="k", max_retries=0)
    spent = usage(20, 9, cached_tokens=8, reasoning_tokens=6)
    fake.script(Reply(response(reasoning_item("Let me think."), message_item("42"), usage_=spent)))
    raw = await openai_client.chat.completions.with_raw_response.create(
        model="fake-model", messages=HI, reasoning_effort="high"
    )
    await openai_client.close()
    body = orjson.loads(raw.content)
    assert_valid_chat_completion(body)
    message = body["choices"][0]["message"]
    assert message["content"] == "42"
    assert message.get("reasoning_content") == ("Let me think." if reasoning_content else None)
    assert body["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 9,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 6,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert fake.last.json()["reasoning"] == {"effort": "high"}


async def test_raw_stream_with_usage_is_valid_and_framed_like_openai(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    final = response(reasoning_item("Hmm."), message_item("Hello!"), usage_=usage(7, 4))
    fake.script(responses_stream(final))
    proxy = await make_proxy("responses")
    body = {
        "model": "fake-model",
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    chunks = chat_chunks(await resp.read())
    assert_valid_chat_stream(chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas(chunks, "reasoning_content") == ["Hm", "m."]
    assert deltas(chunks, "content") == ["", "Hel", "lo!"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 11
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert fake.last.json() == {
        "model": "fake-model",
        "input": [{"type": "message", "role": "user", "content": "hi"}],
        "stream": True,
        "store": False,
    }


async def test_chunks_arrive_before_the_upstream_finishes(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    events = framed(stream_events(response(message_item("first second"))))
    fake.script(StreamReply(events, done=False, hold=release, hold_after=5))
    proxy = await make_proxy("responses")
    resp = await proxy.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": HI, "stream": True}
    )
    received = b""
    while received.count(b"\n\n") < 2:
        received += await asyncio.wait_for(resp.content.readany(), 5)
    assert deltas(chat_chunks(received + b"data: [DONE]\n\n"), "content") == ["", "first "]
    assert fake.parts_sent == 5
    release.set()
    rest = chat_chunks(received + await resp.read())
    assert "".join(deltas(rest, "content")) == "first second"


async def test_sdk_raw_stream_with_include_usage(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(responses_stream(response(message_item("One two"), usage_=usage(3, 2))))
    stream = await client.chat.completions.create(
        model="fake-model", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk.to_dict() async for chunk in stream]
    assert_valid_chat_stream(chunks)
    assert "".join(deltas(chunks, "content")) == "One two"
    assert chunks[-1]["usage"]["prompt_tokens"] == 3


async def test_sdk_stream_helper_with_a_tool_call(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    final = response(
        reasoning_item("Need the tool."),
        function_call_item("call_1", "get_weather", '{"city":"Paris"}'),
    )
    fake.script(responses_stream(final, split=3))
    async with client.chat.completions.stream(
        model="fake-model",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        async for event in stream:
            if event.type == "chunk":
                assert_valid_chat_chunk(event.chunk.to_dict())
        completion = await stream.get_final_completion()
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert fake.last.json()["stream"] is True


async def test_sdk_stream_helper_with_text(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(responses_stream(response(message_item("Streaming works."))))
    pieces = []
    async with client.chat.completions.stream(model="fake-model", messages=HI) as stream:
        async for event in stream:
            if event.type == "chunk":
                assert_valid_chat_chunk(event.chunk.to_dict())
            elif event.type == "content.delta":
                pieces.append(event.delta)
        completion = await stream.get_final_completion()
    assert completion.choices[0].message.content == "Streaming works."
    assert "".join(pieces) == "Streaming works."


async def test_n_2_non_stream_merges_two_upstream_answers(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(response(message_item("first"), usage_=usage(10, 1))),
        Reply(response(message_item("second"), usage_=usage(10, 2))),
    )
    proxy = await make_proxy("responses")
    resp = await proxy.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": HI, "n": 2}
    )
    assert resp.status == 200
    body = await resp.json()
    assert_valid_chat_completion(body)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert sorted(c["message"]["content"] for c in body["choices"]) == ["first", "second"]
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (20, 3)
    assert body["usage"]["total_tokens"] == 23
    assert len(fake.received) == 2
    assert fake.received[0].body == fake.received[1].body
    assert "n" not in fake.last.json()


async def test_n_2_stream_interleaves_both_choices_with_one_usage_chunk(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        responses_stream(response(message_item("first answer"), usage_=usage(10, 1)), split=4),
        responses_stream(response(message_item("second answer"), usage_=usage(10, 2)), split=4),
    )
    proxy = await make_proxy("responses")
    body = {
        "model": "fake-model",
        "messages": HI,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    chunks = chat_chunks(await resp.read())
    assert_valid_chat_stream(chunks)
    assert all(len(chunk["choices"]) == 1 for chunk in chunks[:-1])
    texts = sorted("".join(deltas(chunks, "content", index)) for index in (0, 1))
    assert texts == ["first answer", "second answer"]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert [c["finish_reason"] for c in mine] == [None] * (len(mine) - 1) + ["stop"]
    usage_chunks = [chunk for chunk in chunks if not chunk["choices"]]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["usage"]["prompt_tokens"] == 20
    assert len(fake.received) == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_n_2_one_upstream_refusal_answers_and_cancels_the_other(
    make_proxy: MakeProxy, fake: CountingUpstream, stream: bool
) -> None:
    refusal = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    fake.script(Hang(), Reply(refusal, status=429, headers={"Retry-After": "7"}))
    proxy = await make_proxy("responses")
    body = {"model": "fake-model", "messages": HI, "n": 2, "stream": stream}
    with capture_logs() as logs:
        resp = await proxy.post("/v1/chat/completions", json=body)
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["upstream_status"] == 429  # the exchange that failed, not the one still open
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "7"
    assert await resp.json() == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    await asyncio.wait_for(fake.all_cancelled.wait(), 5)
    assert fake.cancellations == 1


async def test_n_2_stream_one_breaking_ends_all_with_an_error(
    make_proxy: MakeProxy, fake: CountingUpstream
) -> None:
    events = framed(stream_events(response(message_item("never finished"))))
    fake.script(
        StreamReply(events, done=False, hold=asyncio.Event(), hold_after=4),
        StreamReply(events[:5], done=False, then="drop"),
    )
    proxy = await make_proxy("responses")
    body = {"model": "fake-model", "messages": HI, "n": 2, "stream": True}
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    chunks = chat_chunks(await resp.read())
    error = chunks[-1]
    assert set(error) == {"error"}
    assert error["error"]["type"] == "server_error"
    assert error["error"]["message"].startswith("The upstream connection broke mid-stream")
    assert_valid_chat_stream(chunks[:-1])
    await asyncio.wait_for(fake.all_cancelled.wait(), 5)


async def test_dropped_params_are_logged_and_listed_in_a_header(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(response(message_item("ok"))))
    proxy = await make_proxy("responses")
    body = {"model": "fake-model", "messages": HI, "stop": ["\n"], "logit_bias": {"50256": -100}}
    with capture_logs() as logs:
        resp = await proxy.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "d-1"})
    assert resp.status == 200
    assert resp.headers["x-diglot-dropped-params"] == "stop, logit_bias"
    sent = fake.last.json()
    assert "stop" not in sent and "logit_bias" not in sent
    warnings = [entry for entry in logs if entry["event"] == "field_dropped"]
    assert [(w["param"], w["request_id"], w["log_level"]) for w in warnings] == [
        ("stop", "d-1", "warning"),
        ("logit_bias", "d-1", "warning"),
    ]
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["dropped"] == ("stop", "logit_bias")


async def test_dropped_params_on_a_stream_are_listed_too(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(responses_stream(response(message_item("ok"))))
    proxy = await make_proxy("responses")
    body = {"model": "fake-model", "messages": HI, "stream": True, "presence_penalty": 0.5}
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.headers["x-diglot-dropped-params"] == "presence_penalty"
    assert "".join(deltas(chat_chunks(await resp.read()), "content")) == "ok"


async def test_strict_refuses_what_it_would_drop(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    proxy = await make_proxy("responses", strict=True)
    body = {"model": "fake-model", "messages": HI, "stop": "\n"}
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "stop")
    assert fake.received == []


async def test_chat_only_params_are_forwarded_when_configured(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(response(message_item("ok"))))
    proxy = await make_proxy("responses", forward_chat_only_params=True, hoist_system=True)
    body = {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief"}, *HI],
        "stop": ["END"],
        "frequency_penalty": 0.2,
    }
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert "x-diglot-dropped-params" not in resp.headers
    sent = fake.last.json()
    assert (sent["stop"], sent["frequency_penalty"]) == (["END"], 0.2)
    assert sent["instructions"] == "Be brief"
    assert sent["input"] == [{"type": "message", "role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ({"code": "server_error", "message": "The model crashed."}, 500, "server_error"),
        ({"code": "rate_limit_exceeded", "message": "Too fast."}, 429, "rate_limit_error"),
        ({"code": "invalid_prompt", "message": "Flagged."}, 400, "invalid_request_error"),
    ],
)
async def test_a_failed_upstream_response_is_an_error_in_the_clients_shape(
    make_proxy: MakeProxy, fake: FakeUpstream, error: dict[str, str], status: int, kind: str
) -> None:
    fake.script(Reply(response(status="failed", error=error)))
    proxy = await make_proxy("responses")
    with capture_logs() as logs:
        resp = await proxy.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": HI}
        )
    assert resp.status == status
    assert await resp.json() == {
        "error": {"message": error["message"], "type": kind, "param": None, "code": error["code"]}
    }
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert (line["status"], line["error"]) == (status, error["message"])
    assert line["upstream_error"] == "error_event"


async def test_the_sdk_raises_the_upstreams_error(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(
        Reply(
            {
                "error": {
                    "message": "no such model",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            },
            status=404,
        )
    )
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="nope", messages=HI)
    assert caught.value.body == {
        "message": "no such model",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


async def test_upstream_error_status_keeps_retry_after_when_streaming(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(b"overloaded", status=503, headers={"Retry-After": "3"}, content_type="text/plain")
    )
    proxy = await make_proxy("responses")
    body = {"model": "fake-model", "messages": HI, "stream": True}
    resp = await proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "3"
    assert await resp.json() == {
        "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    }


@pytest.mark.parametrize(
    "reply",
    [
        Reply(b"<html>not json</html>", content_type="text/html"),
        Reply(b"[]"),
        Reply(b"", status=304),
    ],
)
async def test_an_unreadable_upstream_answer_is_a_502(
    make_proxy: MakeProxy, fake: FakeUpstream, reply: Reply
) -> None:
    fake.script(reply)
    proxy = await make_proxy("responses")
    resp = await proxy.post("/v1/chat/completions", json={"model": "fake-model", "messages": HI})
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert (error["type"], error["code"]) == ("server_error", "bad_upstream_response")


async def test_a_stream_answered_without_events_is_a_502(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(response(message_item("not streamed"))))
    proxy = await make_proxy("responses")
    resp = await proxy.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": HI, "stream": True}
    )
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["message"] == (
        "The upstream answered a streaming request with application/json, not an event stream."
    )


async def test_an_unreachable_upstream_is_a_502(aiohttp_client: Any, free_port: int) -> None:
    config = Config(upstream=f"http://127.0.0.1:{free_port}/v1", upstream_api="responses")
    proxy = await aiohttp_client(create_app(config))
    resp = await proxy.post("/v1/chat/completions", json={"model": "fake-model", "messages": HI})
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unreachable"


FAILED_EVENT = {
    "type": "response.failed",
    "response": response(status="failed", error={"code": "server_error", "message": "Died."}),
}
ERROR_EVENT = {"type": "error", "code": "rate_limit_exceeded", "message": "Died.", "param": None}


@pytest.mark.parametrize(
    ("event", "kind", "code"),
    [
        (FAILED_EVENT, "server_error", "server_error"),
        (ERROR_EVENT, "rate_limit_error", "rate_limit_exceeded"),
    ],
)
async def test_a_failure_mid_stream_becomes_an_error_chunk(
    make_proxy: MakeProxy, fake: FakeUpstream, event: dict[str, Any], kind: str, code: str
) -> None:
    events = [*stream_events(response(message_item("partial")))[:-4], event]
    fake.script(StreamReply(framed(events), done=False))
    proxy = await make_proxy("responses")
    with capture_logs() as logs:
        resp = await proxy.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": HI, "stream": True}
        )
        raw = await resp.read()
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    chunks = chat_chunks(raw)
    assert_valid_chat_stream(chunks[:-1])
    assert deltas(chunks[:-1], "content") == ["", "part", "ial"]
    assert chunks[-1] == {"error": {"message": "Died.", "type": kind, "param": None, "code": code}}
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert (line["error"], line["upstream_error"]) == ("Died.", "error_event")


async def test_rate_limit_headers_of_a_success_are_kept(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    limits = {"x-ratelimit-remaining-requests": "9", "x-ratelimit-limit-tokens": "1000"}
    fake.script(Reply(response(message_item("ok")), headers=limits))
    proxy = await make_proxy("responses")
    resp = await proxy.post("/v1/chat/completions", json={"model": "fake-model", "messages": HI})
    assert resp.status == 200
    assert {key: resp.headers[key] for key in limits} == limits


@pytest.mark.parametrize(
    ("tail", "then", "message", "fault"),
    [
        ([], "drop", "The upstream connection broke mid-stream", "broken_stream"),
        (
            [b"data: {not json\n\n"],
            "end",
            "The upstream sent a stream event that is not JSON.",
            "bad_json",
        ),
        (
            [b"data: [1]\n\n"],
            "end",
            "The upstream sent a stream event that is not an object.",
            "bad_json",
        ),
        ([], "end", "The upstream stream ended before the response finished.", "broken_stream"),
        (
            [b"data: " + b"x" * (17 * 1024 * 1024)],
            "end",
            "The upstream stream is malformed",
            "bad_sse",
        ),
    ],
)
async def test_a_broken_upstream_stream_ends_with_an_error_chunk_and_done(
    make_proxy: MakeProxy,
    fake: FakeUpstream,
    tail: list[bytes],
    then: str,
    message: str,
    fault: str,
) -> None:
    events = framed(stream_events(response(message_item("cut short"))))[:5]
    fake.script(StreamReply([*events, *tail], done=False, then=then))  # type: ignore[arg-type]
    proxy = await make_proxy("responses")
    with capture_logs() as logs:
        resp = await proxy.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": HI, "stream": True}
        )
        raw = await resp.read()
    assert resp.status == 200
    chunks = chat_chunks(raw)
    assert_valid_chat_stream(chunks[:-1])
    assert deltas(chunks[:-1], "content") == ["", "cut s"]
    [error] = [chunk for chunk in chunks if "error" in chunk]
    assert error is chunks[-1]
    assert error["error"]["message"].startswith(message)
    assert error["error"]["type"] == "server_error"
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["error"].startswith(message)
    assert line["upstream_error"] == fault


async def test_the_sdk_raises_on_a_mid_stream_error(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    events = framed(stream_events(response(message_item("cut short"))))[:5]
    fake.script(StreamReply(events, done=False, then="drop"))
    stream = await client.chat.completions.create(model="fake-model", messages=HI, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="The upstream connection broke mid-stream"):
        async for chunk in stream:
            received.append(chunk)
    assert received


@pytest.mark.parametrize("n", [1, 2])
async def test_client_disconnect_cancels_upstream_requests(
    make_proxy: MakeProxy, fake: CountingUpstream, n: int
) -> None:
    fake.expected_cancellations = n
    events = framed(stream_events(response(message_item("a long answer"))))
    fake.responder = lambda _: StreamReply(events, done=False, hold=asyncio.Event(), hold_after=5)
    proxy = await make_proxy("responses")
    resp = await proxy.post(
        "/v1/chat/completions",
        json={"model": "fake-model", "messages": HI, "stream": True, "n": n},
    )
    assert await asyncio.wait_for(resp.content.readany(), 5)
    resp.close()
    await asyncio.wait_for(fake.all_cancelled.wait(), 5)
    assert fake.cancellations == n


async def test_client_disconnect_cancels_non_stream_fan_out(
    make_proxy: MakeProxy, fake: CountingUpstream
) -> None:
    fake.expected_cancellations = 2
    fake.script(Hang(), Hang())
    proxy = await make_proxy("responses")
    request = asyncio.ensure_future(
        proxy.post("/v1/chat/completions", json={"model": "fake-model", "messages": HI, "n": 2})
    )
    while len(fake.received) < 2:
        fake.arrived.clear()
        await asyncio.wait_for(fake.arrived.wait(), 5)
    request.cancel()
    await asyncio.wait_for(fake.all_cancelled.wait(), 5)
    assert fake.cancellations == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', "messages"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 0}', "n"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": 1}', "stream"),
    ],
)
async def test_bad_client_input_is_400_never_500(
    make_proxy: MakeProxy, fake: FakeUpstream, body: bytes, param: str | None
) -> None:
    proxy = await make_proxy("responses")
    resp = await proxy.post("/v1/chat/completions", data=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param)
    assert fake.received == []


async def test_one_log_line_per_request(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(response(message_item("ok"), usage_=usage(7, 2))))
    proxy = await make_proxy("responses")
    with capture_logs() as logs:
        await proxy.post(
            "/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "secret"}]},
            headers={"Authorization": "Bearer sk-secret", "X-Request-Id": "log-1"},
        )
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_id"] == "log-1"
    assert line["direction"] == "chat->responses"
    assert (line["status"], line["upstream_status"]) == (200, 200)
    assert (line["input_tokens"], line["output_tokens"]) == (7, 2)
    assert "sk-secret" not in repr(logs) and "secret" not in repr(
        [entry for entry in logs if entry["event"] != "request"]
    )


def agent_conversation(received: Received) -> Script:
    """Turn 1: call the weather tool; turn 2 (its output present): the answer."""
    body = received.json()
    last = body["input"][-1]
    if last["type"] == "function_call_output":
        final = response(message_item(f"The weather in Paris is {last['output']}."))
    else:
        final = response(function_call_item("call_a", "get_weather", '{"city":"Paris"}'))
    return responses_stream(final) if body.get("stream") else Reply(final)


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_agents_chat_completions_model_runs_a_tool_calling_agent(
    client: AsyncOpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    fake.responder = agent_conversation
    model = OpenAIChatCompletionsModel(model="fake-model", openai_client=client)
    final, asked = await run_weather_agent(model, streamed, _has_type)
    assert final == "The weather in Paris is sunny."
    assert asked == ["Paris"]
    assert len(fake.received) == 2
    first, second = (r.json() for r in fake.received)
    assert all(r.path == "/v1/responses" for r in fake.received)
    assert first["input"][0] == {
        "type": "message",
        "role": "system",
        "content": "Answer weather questions with the tool.",
    }
    assert first["tools"][0]["name"] == "get_weather"
    assert second["input"][-2]["type"] == "function_call"
    assert second["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_a",
        "output": "sunny",
    }


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "bogus"])},
    optional={
        "text": _json,
        "image_url": _json | st.just({"url": "https://x.test/a.png", "detail": "low"}),
        "input_audio": _json,
        "file": _json,
        "refusal": _json,
    },
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
    optional={
        "content": st.text(max_size=5) | st.lists(_PART, max_size=2) | _json,
        "name": _json,
        "tool_calls": _json
        | st.just([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
        "tool_call_id": _json,
        "reasoning_content": _json,
    },
)
_VALID_MESSAGE = st.sampled_from(
    [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
        {"role": "user", "content": "hi"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        },
        {"role": "assistant", "content": "Hello.", "reasoning_content": "Greeting."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "content": "hi", "name": "ann"},
    ]
)
# Each parameter: a value the API accepts, or any JSON at all.
_CHAT_PARAMS: dict[str, list[Any]] = {
    "tools": [[WEATHER_TOOL], [{"type": "custom", "custom": {"name": "sql"}}]],
    "tool_choice": ["auto", "required", {"type": "function", "function": {"name": "get_weather"}}],
    "functions": [[{"name": "f", "parameters": {"type": "object"}}]],
    "function_call": ["auto", {"name": "f"}],
    "stream_options": [{"include_usage": True}],
    "response_format": [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    ],
    "reasoning_effort": ["low", "high"],
    "max_tokens": [16],
    "max_completion_tokens": [16],
    "logprobs": [True],
    "top_logprobs": [2],
    "stop": [["\n"], "END"],
    "metadata": [{"k": "v"}],
    "store": [True, False],
    "web_search_options": [{}, {"search_context_size": "low"}],
    "temperature": [0.2],
    "seed": [7],
}


def _mostly(valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
    """Valid nine times in ten, so that bodies with several fields get past validation too."""
    return st.integers(0, 9).flatmap(lambda pick: anything if pick == 0 else valid)


_CHAT_BODIES = st.fixed_dictionaries(
    {
        "model": _mostly(st.just("fake-model"), _json),
        "messages": _mostly(
            st.lists(_mostly(_VALID_MESSAGE, _MESSAGE), min_size=1, max_size=3), _json
        ),
    },
    optional={
        "stream": _mostly(st.booleans(), _json),
        "n": _mostly(st.sampled_from([1, 2]), _json),
        **{key: _mostly(st.sampled_from(v), _json) for key, v in _CHAT_PARAMS.items()},
    },
)


def _any_answer(received: Received) -> Script:
    final = response(reasoning_item("Hm."), message_item("ok"))
    return responses_stream(final) if received.json().get("stream") else Reply(final)


@settings(
    max_examples=120,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_CHAT_BODIES)
async def test_no_chat_body_produces_a_500(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = _any_answer
    proxy = await make_proxy("responses")
    resp = await proxy.post("/v1/chat/completions", data=json.dumps(body))
    payload = await resp.read()
    assert resp.status in (200, 400), payload
    if resp.status == 400:
        error = orjson.loads(payload)["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    elif resp.headers["Content-Type"].startswith("text/event-stream"):
        assert_valid_chat_stream([c for c in chat_chunks(payload) if "error" not in c])
    else:
        assert_valid_chat_completion(orjson.loads(payload))


def _has_type(data: Any) -> None:
    assert data.type
