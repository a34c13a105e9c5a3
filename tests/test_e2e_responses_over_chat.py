"""The real openai and openai-agents clients talking Responses to diglot over a chat-only fake."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import zstandard
from agents import OpenAIResponsesModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    Script,
    StreamReply,
    chunk,
    completion,
    text_chunks,
    tool_call,
    tool_call_chunks,
    usage,
)
from tests.validate import assert_valid_response, assert_valid_stream, assert_valid_stream_event
from tests.weather import WEATHER_TOOL, run_weather_agent

if TYPE_CHECKING:
    from tests.conftest import MakeProxy, MakeServer


@pytest.fixture
async def client(make_proxy_server: MakeServer) -> AsyncIterator[AsyncOpenAI]:
    server = await make_proxy_server("chat")
    openai = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="sk-test", max_retries=0)
    yield openai
    await openai.close()


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """OpenAI framing, strictly: `event: <type>`, one `data:` line, a blank line, LF only."""
    assert b"\r" not in raw and raw.endswith(b"\n\n")
    events = []
    for block in raw.split(b"\n\n")[:-1]:
        event_line, data_line = block.split(b"\n")
        event = orjson.loads(data_line.removeprefix(b"data: "))
        assert event_line == b"event: " + event["type"].encode()
        events.append(event)
    return events


async def test_create_text(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("Hello there!", usage_=usage(12, 3))))
    raw = await client.responses.with_raw_response.create(
        model="fake-model", input="Say hi", instructions="Be brief", temperature=0.5
    )
    body = orjson.loads(raw.content)
    assert_valid_response(body)
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "Hello there!"
    assert response.instructions == "Be brief"
    assert response.temperature == 0.5
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert raw.headers["x-request-id"] == fake.last.headers["x-request-id"]
    sent = fake.last.json()
    assert fake.last.path == "/v1/chat/completions"
    assert sent["model"] == "fake-model"
    assert sent["temperature"] == 0.5
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Say hi"},
    ]
    assert "stream" not in sent or sent["stream"] is False
    assert fake.last.headers["Authorization"] == "Bearer sk-test"


async def test_create_with_tools(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    calls = [tool_call("call_1", "get_weather", '{"city":"Paris"}')]
    fake.script(Reply(completion(None, tool_calls=calls, finish_reason="tool_calls")))
    raw = await client.responses.with_raw_response.create(
        model="fake-model",
        input="Weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert_valid_response(orjson.loads(raw.content))
    response = raw.parse()
    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    sent = fake.last.json()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER_TOOL["parameters"],
                "strict": True,
            },
        }
    ]


async def test_stream_events_are_valid_and_framed_like_openai(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hel", "lo", "!")))
    proxy = await make_proxy("chat")
    resp = await proxy.post(
        "/v1/responses", json={"model": "fake-model", "input": "hi", "stream": True}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(await resp.read())
    response = assert_valid_stream(events)
    assert response["status"] == "completed"
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "Hel",
        "lo",
        "!",
    ]
    sent = fake.last.json()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_sdk_stream_of_raw_events_validates(client: AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(StreamReply(text_chunks("One", " two")))
    stream = await client.responses.create(model="fake-model", input="count", stream=True)
    events = [event.to_dict() async for event in stream]
    response = assert_valid_stream(events)
    assert response["output"][0]["content"][0]["text"] == "One two"
    assert response["usage"]["total_tokens"] == 15


def unparsed(response: dict[str, Any]) -> dict[str, Any]:
    """A response without what the SDK's stream helper adds client-side (`parsed*` keys)."""

    def plain(obj: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in obj.items() if not key.startswith("parsed")}

    output = []
    for item in response["output"]:
        item = plain(item)
        if isinstance(item.get("content"), list):
            item["content"] = [plain(part) for part in item["content"]]
        output.append(item)
    return {**response, "output": output}


def weather_conversation(received: Received) -> Script:
    """Turn 1: two parallel weather calls; turn 2 (tool results present): the answer."""
    messages = received.json()["messages"]
    if messages[-1]["role"] != "tool":
        return StreamReply(
            tool_call_chunks(
                ("call_p", "get_weather", '{"city":"Paris"}'),
                ("call_r", "get_weather", '{"city":"Rome"}'),
            )
        )
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    return StreamReply(text_chunks(f"Paris: {results['call_p']}.", f" Rome: {results['call_r']}."))


async def test_multi_step_tool_conversation_with_responses_stream(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.responder = weather_conversation
    history: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    async with client.responses.stream(
        model="fake-model",
        input=history,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        async for event in stream:
            assert event.type
        first = await stream.get_final_response()
    assert_valid_response(unparsed(first.to_dict()))
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [
        ("call_p", '{"city":"Paris"}'),
        ("call_r", '{"city":"Rome"}'),
    ]
    assert len({c.id for c in calls}) == 2
    history += unparsed(first.to_dict())["output"]
    history += [
        {"type": "function_call_output", "call_id": "call_p", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_r", "output": "rainy"},
    ]
    async with client.responses.stream(
        model="fake-model",
        input=history,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        second = await stream.get_final_response()
    assert_valid_response(unparsed(second.to_dict()))
    assert second.output_text == "Paris: sunny. Rome: rainy."
    assert "".join(deltas) == second.output_text
    messages = fake.last.json()["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris and Rome?"}
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_p", "call_r"]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [
        '{"city":"Paris"}',
        '{"city":"Rome"}',
    ]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "call_p", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_r", "content": "rainy"},
    ]


def agent_conversation(received: Received) -> Script:
    messages = received.json()["messages"]
    stream = received.json().get("stream")
    if messages[-1]["role"] == "tool":
        answer = f"The weather in Paris is {messages[-1]['content']}."
        return StreamReply(text_chunks(answer)) if stream else Reply(completion(answer))
    call = ("call_a", "get_weather", '{"city":"Paris"}')
    if stream:
        return StreamReply(tool_call_chunks(call))
    return Reply(completion(None, tool_calls=[tool_call(*call)], finish_reason="tool_calls"))


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_agents_sdk_runs_a_tool_calling_conversation(
    client: AsyncOpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    fake.responder = agent_conversation
    model = OpenAIResponsesModel(model="fake-model", openai_client=client)
    final, asked = await run_weather_agent(
        model, streamed, lambda data: assert_valid_stream_event(data.to_dict())
    )
    assert final == "The weather in Paris is sunny."
    assert asked == ["Paris"]
    assert len(fake.received) == 2
    first, second = (r.json() for r in fake.received)
    assert first["messages"][0] == {
        "role": "system",
        "content": "Answer weather questions with the tool.",
    }
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}


async def test_client_disconnect_mid_translation_cancels_upstream(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("a", "b"), hold=asyncio.Event(), hold_after=2))
    proxy = await make_proxy("chat")
    resp = await proxy.post(
        "/v1/responses", json={"model": "fake-model", "input": "hi", "stream": True}
    )
    assert await asyncio.wait_for(resp.content.readany(), 5)
    resp.close()
    await asyncio.wait_for(fake.cancelled.wait(), 5)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe", None),
        (b"[]", None),
        (b"null", None),
        (b'"text"', None),
        (b'{"input": "hi"}', "model"),
        (b'{"model": 7, "input": "hi"}', "model"),
        (b'{"model": "m", "input": 5}', "input"),
        (b'{"model": "m", "input": [{"type": "no_such_item"}]}', "input"),
        (b'{"model": "m", "input": "hi", "stream": "yes"}', "stream"),
        (b'{"model": "m", "input": "hi", "tools": "all"}', "tools"),
        (b'{"model": "m", "input": "hi", "temperature": "hot"}', "temperature"),
        (b"[" * 5000 + b"]" * 5000, None),
    ],
)
async def test_bad_client_input_is_400_never_500(
    make_proxy: MakeProxy, fake: FakeUpstream, body: bytes, param: str | None
) -> None:
    proxy = await make_proxy("chat")
    resp = await proxy.post("/v1/responses", data=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param)
    assert fake.received == []


async def test_dropped_fields_are_logged_and_refused_when_strict(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    body = {"model": "fake-model", "input": "hi", "tools": [{"type": "web_search"}]}
    fake.script(Reply(completion("ok")))
    lenient = await make_proxy("chat")
    with capture_logs() as logs:
        resp = await lenient.post("/v1/responses", json=body, headers={"X-Request-Id": "d-1"})
    assert resp.status == 200
    assert "tools" not in fake.last.json()
    [warning] = [entry for entry in logs if entry["event"] == "field_dropped"]
    assert warning["log_level"] == "warning"
    assert warning["request_id"] == "d-1"
    assert warning["param"].startswith("tools")
    strict = await make_proxy("chat", strict=True)
    resp = await strict.post("/v1/responses", json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith("tools")
    assert len(fake.received) == 1


async def test_one_log_line_per_request_without_secrets(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("ok", usage_=usage(7, 2))))
    proxy = await make_proxy("chat")
    with capture_logs() as logs:
        await proxy.post(
            "/v1/responses",
            json={"model": "fake-model", "input": "secret prompt"},
            headers={"Authorization": "Bearer sk-secret", "X-Request-Id": "log-1"},
        )
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_id"] == "log-1"
    assert line["direction"] == "responses->chat"
    assert line["model"] == "fake-model"
    assert (line["status"], line["upstream_status"]) == (200, 200)
    assert (line["input_tokens"], line["output_tokens"]) == (7, 2)
    assert line["duration_ms"] >= line["upstream_ms"] >= 0
    assert "sk-secret" not in repr(logs)
    assert "secret prompt" not in repr(logs)


CODEX_BODY = {
    "model": "fake-model",
    "instructions": None,
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "You are a coding agent."}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "exec_command",
            "description": "Run a command.",
            "strict": False,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
        {
            "type": "namespace",
            "name": "mcp__files",
            "description": "File tools.",
            "tools": [
                {
                    "type": "function",
                    "name": "read",
                    "description": "Read a file.",
                    "strict": False,
                    "parameters": {"type": "object", "properties": {}},
                }
            ],
        },
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1",
    "client_metadata": {"x": "y"},
}


async def test_codex_like_zstd_request_streams_a_valid_answer(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        StreamReply(
            [
                chunk({"role": "assistant", "reasoning_content": "Listing files."}),
                *tool_call_chunks(("call_x", "exec_command", '{"cmd":"ls"}'))[1:],
            ]
        )
    )
    proxy = await make_proxy("chat")
    resp = await proxy.post(
        "/v1/responses",
        data=zstandard.ZstdCompressor().compress(orjson.dumps(CODEX_BODY)),
        headers={
            "Content-Encoding": "zstd",
            "Content-Type": "application/json",
            "Authorization": "Bearer local",
            "session-id": "s-1",
            "x-codex-turn-metadata": "{}",
        },
    )
    assert resp.status == 200
    events = sse_events(await resp.read())
    response = assert_valid_stream(events)
    assert response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == ["reasoning", "function_call"]
    assert response["output"][1]["call_id"] == "call_x"
    sent = fake.last.json()
    assert sent["messages"][0]["content"] == "You are a coding agent."
    assert sent["messages"][0]["role"] in ("system", "developer")
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert "exec_command" in names and len(names) == 2
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name) for name in names)
    for leaked in ("store", "include", "reasoning", "client_metadata", "instructions"):
        assert leaked not in sent
    assert fake.last.headers["session-id"] == "s-1"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_KEYS = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "stream",
    "text",
    "reasoning",
    "temperature",
    "max_output_tokens",
    "include",
    "metadata",
    "store",
    "top_logprobs",
]
_ITEM = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message",
                "function_call",
                "function_call_output",
                "reasoning",
                "custom_tool_call",
                "item_reference",
                "bogus",
            ]
        )
    },
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
        "content": _json,
        "call_id": _json,
        "name": _json,
        "arguments": _json,
        "output": _json,
        "id": _json,
    },
)
_BODIES = st.fixed_dictionaries(
    {"model": st.just("fake-model") | _json},
    optional={
        "input": st.text(max_size=5) | st.lists(_ITEM, max_size=3) | _json,
        **{key: _json for key in _KEYS if key not in ("model", "input")},
    },
)


@settings(
    max_examples=120,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_BODIES)
async def test_no_client_body_produces_a_500(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = lambda received: (
        StreamReply(text_chunks("ok")) if received.json().get("stream") else Reply(completion("ok"))
    )
    proxy = await make_proxy("chat")
    resp = await proxy.post("/v1/responses", data=json.dumps(body))
    payload = await resp.read()
    assert resp.status in (200, 400), payload
    if resp.status == 400:
        error = orjson.loads(payload)["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    elif resp.headers["Content-Type"].startswith("text/event-stream"):
        assert_valid_stream(sse_events(payload))
    else:
        assert_valid_response(orjson.loads(payload))


async def test_integers_beyond_64_bits_are_carried_not_a_500(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("ok")))
    proxy = await make_proxy("chat")
    huge = 2**70
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": huge}}}
    tool = {**WEATHER_TOOL, "parameters": schema, "strict": False}
    body = {"model": "m", "input": "hi", "tools": [tool], "top_k": huge}
    resp = await proxy.post("/v1/responses", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    assert json.loads(await resp.read())["tools"] == [tool]
    sent = json.loads(fake.last.body)
    assert sent["top_k"] == huge
    assert sent["tools"][0]["function"]["parameters"] == schema
