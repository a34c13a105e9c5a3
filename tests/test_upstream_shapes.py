"""A 200 whose JSON is not the upstream API's shape is a 502 naming it, never a 500 or a 200.

Whole answers and stream chunks, both translating directions: hand-picked wrong shapes at each
level, and a property over arbitrary JSON and valid answers with one value replaced.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from diglot.proxy.metrics import METRICS
from fixtures import fake_chat_upstream as chat_fake
from fixtures import fake_responses_upstream as responses_fake
from fixtures.fake_chat_upstream import FakeUpstream, Reply, StreamReply
from tests.test_property import FUZZ, any_json
from tests.validate import (
    assert_valid_chat_completion,
    assert_valid_chat_stream,
    assert_valid_response,
    assert_valid_stream,
)

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

Client = TestClient[Any, Any]
RESPONSES_BODY = {"model": "fake-model", "input": "hi"}
CHAT_BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = chat_fake.completion("Hello")
RESPONSE = responses_fake.response(responses_fake.message_item("Hello"))


def bad_answer(message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "server_error",
            "param": None,
            "code": "bad_upstream_response",
        }
    }


def faults(client: Client) -> dict[str, float]:
    """The upstream faults counted, by kind."""
    registry = client.server.app[METRICS].registry
    return {
        sample.labels["kind"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "diglot_upstream_errors_total" and sample.value
    }


def sse_data(raw: bytes) -> list[Any]:
    """The `data:` payloads of an event stream ([DONE] kept as bytes)."""
    payloads = []
    for block in raw.split(b"\n\n")[:-1]:
        [data] = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
        payloads.append(data if data == b"[DONE]" else orjson.loads(data))
    return payloads


# --- whole answers -------------------------------------------------------------------------------

NOT_A_COMPLETION = [
    b"null",
    b"7",
    b'"Hello"',
    b"[]",
    b"[1, 2]",
    b"{}",
    b'{"foo": 1}',
    b'{"error": null}',
    b'{"choices": "x"}',
    b'{"choices": {"message": {}}}',
    b'{"choices": [1]}',
    b'{"choices": [{}]}',
    b'{"choices": [{"message": "Hello"}]}',
    b'{"choices": [{"message": null, "finish_reason": "stop"}]}',
    b'{"choices": [{"message": {}}, []]}',
]


@pytest.mark.parametrize("body", NOT_A_COMPLETION)
async def test_a_responses_client_gets_a_502_for_json_that_is_not_a_chat_completion(
    make_proxy: MakeProxy, fake: FakeUpstream, body: bytes
) -> None:
    fake.script(Reply(body))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=RESPONSES_BODY)
    assert resp.status == 502
    shown = " ".join(body.decode().split())
    assert await resp.json() == bad_answer(
        f"The upstream answered 200 with JSON that is not a chat completion: {shown}"
    )
    assert faults(client) == {"bad_response": 1}


NOT_A_RESPONSE = [
    b"null",
    b"7",
    b'"Hello"',
    b"[]",
    b"[{}]",
    b"{}",
    b'{"foo": 1}',
    b'{"object": "response"}',
    b'{"error": {"message": "overloaded", "code": "server_error"}}',
    b'{"status": "completed"}',
    b'{"status": "completed", "output": {}}',
    b'{"status": "completed", "output": null}',
    b'{"status": null, "output": []}',
    b'{"status": 1, "output": []}',
]


@pytest.mark.parametrize("body", NOT_A_RESPONSE)
async def test_a_chat_client_gets_a_502_for_json_that_is_not_a_response_object(
    make_proxy: MakeProxy, fake: FakeUpstream, body: bytes
) -> None:
    fake.script(Reply(body))
    client = await make_proxy("responses")
    resp = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert resp.status == 502
    shown = " ".join(body.decode().split())
    assert await resp.json() == bad_answer(
        f"The upstream answered 200 with JSON that is not a response object: {shown}"
    )
    assert faults(client) == {"bad_response": 1}


@pytest.mark.parametrize("status", ["in_progress", "queued", "cancelled", ""])
async def test_a_chat_client_gets_a_502_for_a_response_that_has_not_ended(
    make_proxy: MakeProxy, fake: FakeUpstream, status: str
) -> None:
    fake.script(Reply({**RESPONSE, "status": status}))
    client = await make_proxy("responses")
    resp = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert resp.status == 502
    assert await resp.json() == bad_answer(
        f"The upstream answered with a response that has not ended: status {status!r}."
    )
    assert faults(client) == {"bad_response": 1}


async def test_a_long_body_is_quoted_only_in_part(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    long = {"data": ["é" * 50] * 100}
    fake.script(Reply(long))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=RESPONSES_BODY)
    message = (await resp.json())["error"]["message"]
    assert message == (
        "The upstream answered 200 with JSON that is not a chat completion: "
        + orjson.dumps(long).decode()[:200]
        + "…"
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"choices": [{"message": {}}]}, "completed"),
        ({"choices": []}, "failed"),
        ({"error": {"message": "overloaded"}}, "failed"),
    ],
)
async def test_the_least_a_chat_completion_can_be_is_translated(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any], status: str
) -> None:
    fake.script(Reply(body))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=RESPONSES_BODY)
    assert resp.status == 200
    answer = await resp.json()
    assert_valid_response(answer)
    assert (answer["status"], answer["output"]) == (status, [])


async def test_the_least_a_response_object_can_be_is_translated(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply({"status": "completed", "output": []}))
    client = await make_proxy("responses")
    resp = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert resp.status == 200
    answer = await resp.json()
    assert_valid_chat_completion(answer)
    assert answer["choices"][0]["message"]["content"] is None


# --- stream chunks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    [{"foo": 1}, {"choices": "x"}, {"choices": None}, {"choices": [1]}, {"object": "x"}],
)
async def test_a_chat_chunk_of_the_wrong_shape_fails_the_stream(
    make_proxy: MakeProxy, fake: FakeUpstream, chunk: dict[str, Any]
) -> None:
    parts = chat_fake.text_chunks("Hel", "lo")
    fake.script(StreamReply([*parts[:2], chunk, *parts[2:]]))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json={**RESPONSES_BODY, "stream": True})
    assert resp.status == 200
    events = sse_data(await resp.read())
    final = assert_valid_stream(events)
    assert final["status"] == "failed"
    assert final["error"] == {
        "code": "server_error",
        "message": "The upstream sent a stream chunk that is not a chat completion chunk: "
        + orjson.dumps(chunk).decode(),
    }
    assert faults(client) == {"bad_response": 1}


@pytest.mark.parametrize("event", [{"foo": 1}, {"type": 7}, {"type": None, "delta": "x"}])
async def test_a_responses_event_of_the_wrong_shape_fails_the_stream(
    make_proxy: MakeProxy, fake: FakeUpstream, event: dict[str, Any]
) -> None:
    events = responses_fake.stream_events(RESPONSE)
    fake.script(StreamReply([sse(e) for e in [*events[:3], event, *events[3:]]], done=False))
    client = await make_proxy("responses")
    resp = await client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": True})
    assert resp.status == 200
    *chunks, done = sse_data(await resp.read())
    assert done == b"[DONE]"
    assert chunks[-1] == {
        "error": {
            "message": "The upstream sent a stream event that is not a Responses event: "
            + json.dumps(event),
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }
    assert faults(client) == {"bad_response": 1}


# --- the property --------------------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, answer: Any) -> Any:
    """`answer` with one value somewhere (at a level drawn too) replaced by any JSON or removed."""
    value = copy.deepcopy(answer)
    node = value
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return value
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
        elif isinstance(node, dict) and draw(st.booleans()):
            del node[key]
            return value
        else:
            node[key] = draw(any_json)
            return value


def answers(valid: Any) -> st.SearchStrategy[Any]:
    return st.one_of(any_json, damaged(valid), damaged(valid))


def sse(payload: Any) -> bytes:
    """One event; json rather than orjson, which refuses integers beyond 64 bits."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def assert_502_or_translated(
    client: Client, path: str, body: dict[str, Any], answer: Any
) -> None:
    resp = await client.post(path, json=body)
    raw = await resp.read()
    assert resp.status in (200, 502), (resp.status, raw, answer)
    if resp.status == 502:
        error = orjson.loads(raw)["error"]
        assert (error["type"], error["code"]) == ("server_error", "bad_upstream_response")
        return
    if body.get("stream"):
        payloads = sse_data(raw)
        if path == "/v1/responses":
            assert_valid_stream(payloads)
        else:
            *chunks, done = payloads
            assert done == b"[DONE]"
            if chunks and "error" in chunks[-1]:
                assert set(chunks.pop()["error"]) == {"message", "type", "param", "code"}
            if chunks:
                assert_valid_chat_stream(chunks)
    elif path == "/v1/responses":
        assert_valid_response(orjson.loads(raw))
    else:
        assert_valid_chat_completion(orjson.loads(raw))


@FUZZ
@given(answer=answers(COMPLETION))
async def test_any_whole_chat_answer_is_translated_or_a_502(
    make_proxy: MakeProxy, fake: FakeUpstream, answer: Any
) -> None:
    fake.script(Reply(json.dumps(answer).encode()))
    client = await make_proxy("chat")
    await assert_502_or_translated(client, "/v1/responses", RESPONSES_BODY, answer)


@FUZZ
@given(answer=answers(RESPONSE))
async def test_any_whole_responses_answer_is_translated_or_a_502(
    make_proxy: MakeProxy, fake: FakeUpstream, answer: Any
) -> None:
    fake.script(Reply(json.dumps(answer).encode()))
    client = await make_proxy("responses")
    await assert_502_or_translated(client, "/v1/chat/completions", CHAT_BODY, answer)


CHAT_STREAM = chat_fake.text_chunks("Hel", "lo")
RESPONSES_STREAM = responses_fake.stream_events(RESPONSE)


@FUZZ
@given(position=st.integers(0, len(CHAT_STREAM) - 1), data=st.data())
async def test_any_chat_stream_chunk_ends_the_stream_properly(
    make_proxy: MakeProxy, fake: FakeUpstream, position: int, data: st.DataObject
) -> None:
    parts = list(CHAT_STREAM)
    parts[position] = data.draw(answers(parts[position]))
    fake.script(StreamReply([sse(part) for part in parts]))
    client = await make_proxy("chat")
    body = {**RESPONSES_BODY, "stream": True}
    await assert_502_or_translated(client, "/v1/responses", body, parts[position])


@FUZZ
@given(position=st.integers(0, len(RESPONSES_STREAM) - 1), data=st.data())
async def test_any_responses_stream_event_ends_the_stream_properly(
    make_proxy: MakeProxy, fake: FakeUpstream, position: int, data: st.DataObject
) -> None:
    events = list(RESPONSES_STREAM)
    events[position] = data.draw(answers(events[position]))
    fake.script(StreamReply([sse(event) for event in events], done=False))
    client = await make_proxy("responses")
    body = {**CHAT_BODY, "stream": True}
    await assert_502_or_translated(client, "/v1/chat/completions", body, events[position])
