"""Compaction over a chat-only upstream, driven end to end with the openai SDK: the compact route,
compaction items carried back, Codex's in-band `compaction_trigger`, `context_management`, and
the `phase` of assistant messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator
from openai import AsyncOpenAI
from openai.types.responses import ResponseCompactionItem, ResponseUsage
from pydantic import TypeAdapter

from diglot.proxy.conversation import tenant_of
from diglot.proxy.state import PROXY
from diglot.translators.compaction import DEFAULT_PROMPT, SUMMARY_PREFIX, summary_request
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Reply,
    StreamReply,
    chunk,
    completion,
    text_chunks,
    tool_call,
    usage,
    usage_chunk,
)
from tests.test_websocket import connect, create, turn
from tests.validate import assert_valid_response, assert_valid_stream, open_responses_schema

if TYPE_CHECKING:
    from tests.conftest import MakeServer

KEY = "sk-one"
SUMMARY = "Goal: fix calc.py. pytest showed 1 failure. Next: patch add()."
SUMMARY_USAGE = usage(120, 30)
SUMMARY_USAGE_AS_RESPONSES = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 150,
}
ASK = {"role": "user", "content": "Fix the failing test in calc.py."}
KEEP_API = {"role": "user", "content": "Keep the public API."}
CONVERSATION: list[dict[str, Any]] = [
    ASK,
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Running the tests."}],
    },
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "shell",
        "arguments": '{"cmd":"pytest"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "1 failed"},
    KEEP_API,
]
CONVERSATION_AS_CHAT = [
    ASK,
    {
        "role": "assistant",
        "content": "Running the tests.",
        "tool_calls": [tool_call("call_1", "shell", '{"cmd":"pytest"}')],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "1 failed"},
    KEEP_API,
]
PROMPT = {"role": "user", "content": DEFAULT_PROMPT}
SUMMARY_MESSAGE = {"role": "user", "content": SUMMARY_PREFIX + SUMMARY}
SUMMARY_REPLY = Reply(completion(SUMMARY, usage_=SUMMARY_USAGE))
TRIGGER = {"type": "compaction_trigger"}


@pytest.fixture
async def server(make_proxy_server: MakeServer) -> TestServer:
    return await make_proxy_server("chat")


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[AsyncOpenAI]:
    openai = sdk(server)
    yield openai
    await openai.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def sdk(server: TestServer, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


def opened(server: TestServer, item: dict[str, Any], key: str = KEY) -> str:
    """What a compaction item holds, opened as the server that sealed it opens it."""
    tenant = tenant_of({"Authorization": f"Bearer {key}"})
    return server.app[PROXY].sealer.open(item["encrypted_content"], tenant)


def assert_compaction_item(item: dict[str, Any]) -> None:
    TypeAdapter(ResponseCompactionItem).validate_python(item, strict=True)
    assert set(item) == {"id", "type", "encrypted_content"}
    assert item["id"].startswith("cmp_")
    assert SUMMARY not in item["encrypted_content"]


def assert_valid_compacted(body: dict[str, Any]) -> None:
    """A `/responses/compact` answer: the Open Responses `CompactResource`, and the SDK's types
    for its compaction item and usage (its `CompactedResponse` holds assistant messages only)."""
    schema = {
        "$ref": "#/components/schemas/CompactResource",
        "components": open_responses_schema()["components"],
    }
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(body)]
    assert not errors, errors
    assert_compaction_item(body["output"][-1])
    TypeAdapter(ResponseUsage).validate_python(body["usage"], strict=True)


# The compact route.


async def test_compact_sends_the_history_and_the_prompt_and_answers_the_kept_window(
    server: TestServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY)
    raw = await client.responses.with_raw_response.compact(
        model="fake-model",
        input=CONVERSATION,  # type: ignore[arg-type]
        instructions="Be brief.",
    )
    body = orjson.loads(raw.content)
    assert fake.last.path == "/v1/chat/completions"
    assert fake.last.json() == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, *CONVERSATION_AS_CHAT, PROMPT],
    }
    assert_valid_compacted(body)
    assert set(body) == {"id", "object", "created_at", "output", "usage"}
    assert body["id"].startswith("resp_")
    assert body["object"] == "response.compaction"
    assert type(body["created_at"]) is int
    kept, item = body["output"][:-1], body["output"][-1]
    assert [{key: value for key, value in k.items() if key != "id"} for k in kept] == [
        {
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": message["content"]}],
        }
        for message in (ASK, KEEP_API)
    ]
    assert all(k["id"].startswith("msg_") for k in kept)
    assert opened(server, item) == SUMMARY
    assert body["usage"] == SUMMARY_USAGE_AS_RESPONSES


async def test_the_sdk_reads_the_compacted_response(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY)
    compacted = await client.responses.compact(model="fake-model", input="Fix calc.py.")
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "compaction"]
    assert compacted.usage.total_tokens == 150


async def test_compact_without_v1_and_from_a_stored_chain(
    server: TestServer, client: AsyncOpenAI, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.script(Reply(completion("Looking.")), SUMMARY_REPLY)
    first = await client.responses.create(model="fake-model", input=[ASK])
    answer = await session.post(
        server.make_url("/responses/compact"),
        json={"model": "fake-model", "previous_response_id": first.id, "input": [KEEP_API]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 200
    body = await answer.json()
    assert_valid_compacted(body)
    assert fake.last.json()["messages"] == [
        ASK,
        {"role": "assistant", "content": "Looking."},
        KEEP_API,
        PROMPT,
    ]
    stored_ask = (await client.responses.input_items.list(first.id)).data[0]
    assert [item["id"] for item in body["output"][:-1]] == [stored_ask.id, body["output"][1]["id"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [({"input": "hi"}, "model"), ({"model": "fake-model"}, "input")],
)
async def test_compact_without_model_or_input_is_a_400_naming_it(
    server: TestServer,
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    body: dict[str, Any],
    param: str,
) -> None:
    answer = await session.post(
        server.make_url("/v1/responses/compact"),
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 400
    assert await answer.json() == {
        "error": {
            "message": f"Missing required parameter: '{param}'.",
            "type": "invalid_request_error",
            "param": param,
            "code": "missing_required_parameter",
        }
    }
    assert fake.received == []


async def test_compact_passes_through_to_a_responses_upstream(
    make_proxy_server: MakeServer, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    server = await make_proxy_server("responses")
    upstream_answer = {"id": "resp_up", "object": "response.compaction", "output": []}
    fake.script(Reply(upstream_answer))
    sent = b'{"model": "gpt-5", "input": "hi", "odd_field": 1}'
    answer = await session.post(
        server.make_url("/v1/responses/compact"),
        data=sent,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert answer.status == 200
    assert await answer.json() == upstream_answer
    assert (fake.last.method, fake.last.path, fake.last.body) == (
        "POST",
        "/v1/responses/compact",
        sent,
    )


async def test_compact_a_conversation_holding_an_unopenable_blob_is_a_400(
    server: TestServer, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    sealed = server.app[PROXY].sealer.seal(SUMMARY, tenant_of({"Authorization": "Bearer sk-x"}))
    item = {"type": "compaction", "id": "cmp_1", "encrypted_content": sealed}
    answer = await session.post(
        server.make_url("/v1/responses/compact"),
        json={"model": "fake-model", "input": [item, KEEP_API]},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 400
    assert (await answer.json())["error"]["param"] == "input[0].encrypted_content"
    assert fake.received == []


# A compaction item carried back.


async def test_a_compacted_window_sent_back_replaces_the_history_with_the_summary(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY, Reply(completion("Patched.")))
    compacted = await client.responses.with_raw_response.compact(
        model="fake-model",
        input=CONVERSATION,  # type: ignore[arg-type]
    )
    window = orjson.loads(compacted.content)["output"]
    answer = await client.responses.create(
        model="fake-model",
        instructions="Be brief.",
        input=[*window, {"role": "user", "content": "Go on."}],
    )
    assert answer.output_text == "Patched."
    assert fake.last.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        ASK,
        KEEP_API,
        SUMMARY_MESSAGE,
        {"role": "user", "content": "Go on."},
    ]


async def test_a_compaction_item_after_a_stored_chain_is_kept_and_continued(
    server: TestServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(completion("Looking.")), Reply(completion("Patched.")), Reply(completion("Done."))
    )
    first = await client.responses.create(model="fake-model", input=[ASK])
    sealed = server.app[PROXY].sealer.seal(SUMMARY, tenant_of({"Authorization": f"Bearer {KEY}"}))
    item = {"type": "compaction", "id": "cmp_given", "encrypted_content": sealed}
    second = await client.responses.create(
        model="fake-model",
        previous_response_id=first.id,
        input=[item, KEEP_API],  # type: ignore[list-item]
    )
    assert fake.last.json()["messages"] == [ASK, SUMMARY_MESSAGE, KEEP_API]
    listed = await client.responses.input_items.with_raw_response.list(second.id)
    stored = orjson.loads(listed.content)["data"]
    assert [given for given in stored if given["type"] == "compaction"] == [item]  # as it came
    await client.responses.create(
        model="fake-model", previous_response_id=second.id, input="Ship it."
    )
    assert fake.last.json()["messages"] == [
        ASK,
        SUMMARY_MESSAGE,
        KEEP_API,
        {"role": "assistant", "content": "Patched."},
        {"role": "user", "content": "Ship it."},
    ]


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/responses/compact"])
@pytest.mark.parametrize("fault", ["another key", "altered"])
async def test_a_blob_of_another_key_or_altered_is_a_400_naming_it(
    server: TestServer,
    client: AsyncOpenAI,
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    path: str,
    fault: str,
) -> None:
    fake.script(SUMMARY_REPLY)
    compacted = await client.responses.with_raw_response.compact(model="fake-model", input=[ASK])
    item = orjson.loads(compacted.content)["output"][-1]
    key = KEY
    if fault == "another key":
        key = "sk-two"
    else:
        blob = item["encrypted_content"]
        item["encrypted_content"] = blob[:-3] + ("A" if blob[-3] != "A" else "B") + blob[-2:]
    answer = await session.post(
        server.make_url(path),
        json={"model": "fake-model", "input": [ASK, item, KEEP_API]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status == 400
    assert await answer.json() == {
        "error": {
            "message": "Invalid value for 'input[1].encrypted_content': the compaction cannot be "
            "opened; it was altered, cut short or sealed by another server.",
            "type": "invalid_request_error",
            "param": "input[1].encrypted_content",
            "code": "invalid_encrypted_content",
        }
    }
    assert len(fake.received) == 1  # the compaction only


# Codex's in-band trigger.

CODEX_INPUT: list[dict[str, Any]] = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
    *CONVERSATION,
    TRIGGER,
]
CODEX_AS_CHAT = [{"role": "system", "content": "Rules."}, *CONVERSATION_AS_CHAT, PROMPT]


async def test_a_trigger_is_answered_by_exactly_one_compaction_item(
    server: TestServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY)
    raw = await client.responses.with_raw_response.create(
        model="fake-model",
        input=CODEX_INPUT,  # type: ignore[arg-type]
    )
    response = orjson.loads(raw.content)
    assert_valid_response(response)
    assert response["status"] == "completed"
    [item] = response["output"]
    assert_compaction_item(item)
    assert opened(server, item) == SUMMARY
    assert response["usage"] == SUMMARY_USAGE_AS_RESPONSES
    assert [request.json() for request in fake.received] == [
        {"model": "fake-model", "messages": CODEX_AS_CHAT}
    ]


async def test_a_streamed_trigger_streams_exactly_one_compaction_item(
    server: TestServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY)
    stream = await client.responses.create(
        model="fake-model",
        input=CODEX_INPUT,  # type: ignore[arg-type]
        stream=True,
    )
    events = [event.to_dict() async for event in stream]
    response = assert_valid_stream(events)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    [item] = response["output"]
    assert events[2]["item"] == events[3]["item"] == item
    assert_compaction_item(item)
    assert opened(server, item) == SUMMARY
    assert response["usage"] == SUMMARY_USAGE_AS_RESPONSES
    assert [request.json() for request in fake.received] == [
        {"model": "fake-model", "messages": CODEX_AS_CHAT}
    ]


async def test_codex_next_request_after_the_trigger_carries_the_summary(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY, StreamReply(text_chunks("Patching.")))
    stream = await client.responses.create(
        model="fake-model",
        input=CODEX_INPUT,  # type: ignore[arg-type]
        stream=True,
        store=False,
    )
    item = assert_valid_stream([event.to_dict() async for event in stream])["output"][0]
    kept = [CODEX_INPUT[0], ASK, KEEP_API, item]
    stream = await client.responses.create(
        model="fake-model",
        input=kept,  # type: ignore[arg-type]
        stream=True,
        store=False,
    )
    assert_valid_stream([event.to_dict() async for event in stream])
    assert fake.last.json()["messages"] == [
        {"role": "system", "content": "Rules."},
        ASK,
        KEEP_API,
        SUMMARY_MESSAGE,
    ]


async def test_a_trigger_over_websocket_gets_one_compaction_item(
    server: TestServer, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.script(SUMMARY_REPLY)
    ws = await connect(session, server, KEY)
    frames = await turn(ws, create(CODEX_INPUT, store=False))
    response = assert_valid_stream(frames)
    assert [frame["type"] for frame in frames] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    [item] = response["output"]
    assert opened(server, item) == SUMMARY
    assert [request.json() for request in fake.received] == [
        {"model": "m", "messages": CODEX_AS_CHAT}
    ]
    await ws.close()


async def test_a_backend_that_gives_no_summary_is_a_502(
    server: TestServer, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    call = tool_call("call_2", "shell", "{}")
    fake.script(Reply(completion(None, tool_calls=[call], finish_reason="tool_calls")))
    answer = await session.post(
        server.make_url("/v1/responses"),
        json={"model": "fake-model", "input": [ASK, TRIGGER], "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 502
    assert await answer.json() == {
        "error": {
            "message": "The upstream gave no summary to compact the conversation with: its "
            "answer holds no text",
            "type": "server_error",
            "param": None,
            "code": "bad_upstream_response",
        }
    }


# context_management.


async def test_past_the_threshold_the_turn_is_compacted_first(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY, Reply(completion("Patched.")))
    raw = await client.responses.with_raw_response.create(
        model="fake-model",
        input=CONVERSATION,  # type: ignore[arg-type]
        context_management=[{"type": "compaction", "compact_threshold": 20}],
    )
    response = orjson.loads(raw.content)
    assert_valid_response(response)
    compaction, message = response["output"]
    assert_compaction_item(compaction)
    assert message["content"][0]["text"] == "Patched."
    assert [request.json()["messages"] for request in fake.received] == [
        [*CONVERSATION_AS_CHAT, PROMPT],
        [ASK, KEEP_API, SUMMARY_MESSAGE],
    ]


async def test_past_the_threshold_a_stream_starts_with_the_compaction_item(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(SUMMARY_REPLY, StreamReply(text_chunks("Patched.")))
    stream = await client.responses.create(
        model="fake-model",
        input=CONVERSATION,  # type: ignore[arg-type]
        context_management=[{"type": "compaction", "compact_threshold": 20}],
        stream=True,
    )
    events = [event.to_dict() async for event in stream]
    response = assert_valid_stream(events)
    assert [event["type"] for event in events[:5]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert events[2]["item"]["type"] == "compaction"
    assert [item["type"] for item in response["output"]] == ["compaction", "message"]
    assert fake.last.json()["messages"] == [ASK, KEEP_API, SUMMARY_MESSAGE]


async def test_under_the_threshold_the_turn_is_answered_as_it_is(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("Patched.")))
    response = await client.responses.create(
        model="fake-model",
        input=CONVERSATION,  # type: ignore[arg-type]
        context_management=[{"type": "compaction", "compact_threshold": 1000}],
    )
    assert [item.type for item in response.output] == ["message"]
    assert [request.json()["messages"] for request in fake.received] == [CONVERSATION_AS_CHAT]


@pytest.mark.parametrize(("threshold", "compacted"), [(151, True), (152, False)])
async def test_a_chain_is_measured_by_the_usage_its_last_turn_reported(
    client: AsyncOpenAI, fake: FakeUpstream, threshold: int, compacted: bool
) -> None:
    """100 + 50 tokens reported, and 2 for the new input (`"Go on."`: 8 characters of JSON)."""
    fake.script(Reply(completion("Looking.", usage_=usage(100, 50))), SUMMARY_REPLY)
    fake.script(Reply(completion("Patched.")))
    first = await client.responses.create(model="fake-model", input="Fix calc.py.")
    second = await client.responses.create(
        model="fake-model",
        previous_response_id=first.id,
        input="Go on.",
        context_management=[{"type": "compaction", "compact_threshold": threshold}],
    )
    kinds = [item.type for item in second.output]
    assert kinds == (["compaction", "message"] if compacted else ["message"])
    assert len(fake.received) == (3 if compacted else 2)


async def test_a_malformed_context_management_is_a_400_naming_it(
    fake: FakeUpstream, server: TestServer, session: aiohttp.ClientSession
) -> None:
    answer = await session.post(
        server.make_url("/v1/responses"),
        json={
            "model": "fake-model",
            "input": "hi",
            "context_management": [{"type": "compaction", "compact_threshold": -1}],
        },
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 400
    assert await answer.json() == {
        "error": {
            "message": "Invalid value for 'context_management[0].compact_threshold': expected "
            "a positive integer.",
            "type": "invalid_request_error",
            "param": "context_management[0].compact_threshold",
            "code": "invalid_value",
        }
    }
    assert fake.received == []


# phase.


async def test_text_a_tool_call_follows_is_commentary_streamed_and_whole(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    call = tool_call("call_1", "shell", '{"cmd":"pytest"}')
    fake.script(
        StreamReply(
            [
                chunk({"role": "assistant", "content": "Running the tests."}),
                chunk({"tool_calls": [{"index": 0, **call}]}),
                chunk({}, "tool_calls"),
                usage_chunk(),
            ]
        ),
        Reply(completion("Running the tests.", tool_calls=[call], finish_reason="tool_calls")),
    )
    stream = await client.responses.create(model="fake-model", input=[ASK], stream=True)
    events = [event.to_dict() async for event in stream]
    streamed = assert_valid_stream(events)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(item["type"], item.get("phase")) for item in done] == [
        ("message", "commentary"),
        ("function_call", None),
    ]
    assert streamed["output"] == done
    whole = await client.responses.with_raw_response.create(model="fake-model", input=[ASK])
    output = orjson.loads(whole.content)["output"]
    assert [(item["type"], item.get("phase")) for item in output] == [
        ("message", "commentary"),
        ("function_call", None),
    ]


async def test_the_closing_text_is_the_final_answer(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Fixed.")), Reply(completion("Fixed.")))
    stream = await client.responses.create(model="fake-model", input=[ASK], stream=True)
    events = [event.to_dict() async for event in stream]
    streamed = assert_valid_stream(events)
    assert [item["phase"] for item in streamed["output"]] == ["final_answer"]
    whole = await client.responses.create(model="fake-model", input=[ASK])
    assert [item.phase for item in whole.output] == ["final_answer"]  # type: ignore[union-attr]


async def test_a_phase_sent_back_is_stored_and_not_sent_upstream(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    said = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Running the tests."}],
        "phase": "commentary",
    }
    fake.script(Reply(completion("Fixed.")))
    response = await client.responses.create(
        model="fake-model",
        input=[ASK, said, KEEP_API],  # type: ignore[list-item]
    )
    assert fake.last.json()["messages"] == [
        ASK,
        {"role": "assistant", "content": "Running the tests."},
        KEEP_API,
    ]
    stored = await client.responses.input_items.list(response.id, order="asc")
    assert stored.data[1].phase == "commentary"  # type: ignore[union-attr]


def test_the_summary_request_asks_for_one_whole_text_answer() -> None:
    tools = [{"type": "function", "function": {"name": "shell", "parameters": {}}}]
    body = {
        "model": "m",
        "messages": [ASK],
        "tools": tools,
        "tool_choice": "required",
        "parallel_tool_calls": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "response_format": {"type": "json_object"},
        "max_tokens": 5,
        "temperature": 0.2,
    }
    assert summary_request(body, "Sum up.") == {
        "model": "m",
        "messages": [ASK, {"role": "user", "content": "Sum up."}],
        "tools": tools,
        "tool_choice": "none",
        "temperature": 0.2,
    }
