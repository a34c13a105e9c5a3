"""Property: whatever body a client sends, in either API shape and through every direction, the
answer is a 2xx the openai SDK's types accept or a 4xx in OpenAI's error shape, never a 5xx.

Half the bodies are well typed throughout; the other half put arbitrary JSON in any field, so
both the translators and diglot's own edge checks (decoding, limits, passthrough) see them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures import fake_chat_upstream as chat_fake
from fixtures import fake_responses_upstream as responses_fake
from fixtures.fake_chat_upstream import FakeUpstream, Received, Reply, Script
from tests.validate import (
    assert_valid_chat_completion,
    assert_valid_chat_stream,
    assert_valid_response,
    assert_valid_stream,
)

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

FUZZ = settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
name = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_-]{0,20}", fullmatch=True)
text = st.text(max_size=12)
schema = st.just({"type": "object", "properties": {"x": {"type": "string"}}}) | st.just({})
image_url = st.just("data:image/png;base64,iVBORw0KGgo=") | st.just("https://example.com/a.png")


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right type, sometimes any JSON at all."""
    return st.one_of(valid, valid, any_json)


# --- Responses bodies ----------------------------------------------------------------------------

input_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("input_text"), "text": text}),
    st.fixed_dictionaries(
        {"type": st.just("input_image"), "image_url": image_url},
        optional={"detail": st.sampled_from(["auto", "low", "high"])},
    ),
    st.fixed_dictionaries({"type": st.just("output_text"), "text": text}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_file", "refusal", "bogus"])}),
)
input_item = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "developer"]),
            "content": field(text | st.lists(input_part, max_size=3)),
        },
        optional={"type": st.just("message")},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("function_call"),
            "call_id": field(name),
            "name": field(name),
            "arguments": field(st.just('{"x": "1"}') | text),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("function_call_output"),
            "call_id": field(name),
            "output": field(text),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("reasoning"),
            "summary": field(
                st.lists(st.fixed_dictionaries({"type": st.just("summary_text"), "text": text}))
            ),
        },
        optional={"id": name, "encrypted_content": text},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["item_reference", "bogus"]), "id": field(name)}
    ),
)
responses_tool = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "name": field(name),
            "parameters": field(schema),
            "strict": st.booleans(),
            "description": text | st.none(),
        }
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["web_search", "custom"])}),
)
RESPONSES_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "input": text | st.lists(input_item, max_size=4),
    "instructions": text,
    "stream": st.booleans(),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_output_tokens": st.integers(1, 4096),
    "tools": st.lists(responses_tool, max_size=2),
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | st.fixed_dictionaries({"type": st.just("function"), "name": name}),
    "parallel_tool_calls": st.booleans(),
    "text": st.fixed_dictionaries(
        {"format": st.just({"type": "text"})}, optional={"verbosity": st.just("low")}
    ),
    "reasoning": st.fixed_dictionaries(
        {}, optional={"effort": st.sampled_from(["low", "medium", "high"])}
    ),
    "metadata": st.dictionaries(name, text, max_size=2),
    "store": st.booleans(),
    "include": st.lists(st.sampled_from(["reasoning.encrypted_content", "bogus"]), max_size=2),
    "top_logprobs": st.integers(0, 20),
    "user": text,
    "truncation": st.sampled_from(["auto", "disabled"]),
}
responses_bodies = st.one_of(
    st.fixed_dictionaries({"model": st.just("fake-model")}, optional=RESPONSES_FIELDS),
    st.fixed_dictionaries(
        {"model": field(st.just("fake-model"))},
        optional={key: field(value) for key, value in RESPONSES_FIELDS.items()},
    ),
)

# --- Chat bodies ---------------------------------------------------------------------------------

chat_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": image_url})}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "file", "bogus"])}),
)
tool_call = st.fixed_dictionaries(
    {
        "id": field(name),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": field(name), "arguments": field(text)}),
    }
)
chat_message = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user"]),
            "content": field(text | st.lists(chat_part, min_size=1, max_size=3)),
        },
        optional={"name": name},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant")},
        optional={
            "content": field(text | st.none()),
            "tool_calls": st.lists(tool_call, max_size=2),
        },
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": field(name), "content": field(text)}
    ),
    st.fixed_dictionaries({"role": st.sampled_from(["function", "bogus"])}),
)
chat_tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": field(name)}, optional={"parameters": field(schema), "strict": st.booleans()}
        ),
    }
)
CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_tokens": st.integers(1, 4096),
    "max_completion_tokens": st.integers(1, 4096),
    "n": st.integers(1, 3),
    "stop": text | st.lists(text, max_size=4),
    "seed": st.integers(0, 2**31),
    "tools": st.lists(chat_tool, max_size=2),
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | st.fixed_dictionaries(
        {"type": st.just("function"), "function": st.fixed_dictionaries({"name": name})}
    ),
    "parallel_tool_calls": st.booleans(),
    "response_format": st.just({"type": "text"})
    | st.just({"type": "json_object"})
    | st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries({"name": name, "schema": schema}),
        }
    ),
    "logprobs": st.booleans(),
    "top_logprobs": st.integers(0, 20),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high"]),
    "user": text,
    "metadata": st.dictionaries(name, text, max_size=2),
}
chat_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "model": st.just("fake-model"),
            "messages": st.lists(chat_message, min_size=1, max_size=4),
        },
        optional=CHAT_FIELDS,
    ),
    st.fixed_dictionaries(
        {
            "model": field(st.just("fake-model")),
            "messages": field(st.lists(chat_message, min_size=1, max_size=4)),
        },
        optional={key: field(value) for key, value in CHAT_FIELDS.items()},
    ),
)

# --- what the upstream answers and how the answer is checked -------------------------------------


NOT_JSON = Reply({"error": {"message": "not JSON", "type": "invalid_request_error"}}, 400)


def streamed(received: Received) -> bool | None:
    """Whether the body asks for a stream; None when it is not JSON (a backend's 400)."""
    try:
        body = json.loads(received.body)
    except ValueError:
        return None
    return isinstance(body, dict) and body.get("stream") is True


def chat_upstream(received: Received) -> Script:
    """A chat backend answering "ok", streamed when asked."""
    stream = streamed(received)
    if stream is None:
        return NOT_JSON
    if stream:
        return chat_fake.StreamReply(chat_fake.text_chunks("ok"))
    return Reply(chat_fake.completion("ok"))


def responses_upstream(received: Received) -> Script:
    """A Responses backend answering "ok", streamed when asked."""
    stream = streamed(received)
    if stream is None:
        return NOT_JSON
    final = responses_fake.response(responses_fake.message_item("ok"))
    if stream:
        return responses_fake.responses_stream(final)
    return Reply(final)


def sse_data(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an event stream, in order."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    payloads = []
    for block in raw.split(b"\n\n")[:-1]:
        [data] = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
        payloads.append(data)
    return payloads


async def assert_well_formed(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> None:
    resp = await client.post(path, data=json.dumps(body))
    payload = await resp.read()
    assert 200 <= resp.status < 500, (resp.status, payload)
    assert 200 <= resp.status < 300 or resp.status >= 400, resp.status
    if resp.status >= 400:
        error = orjson.loads(payload)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"], error
        assert isinstance(error["type"], str) and error["type"], error
        return
    streamed = resp.headers["Content-Type"].startswith("text/event-stream")
    if path == "/v1/responses" and streamed:
        assert_valid_stream([orjson.loads(data) for data in sse_data(payload)])
    elif path == "/v1/responses":
        assert_valid_response(orjson.loads(payload))
    elif streamed:
        *chunks, done = sse_data(payload)
        assert done == b"[DONE]"
        assert_valid_chat_stream([orjson.loads(chunk) for chunk in chunks])
    else:
        assert_valid_chat_completion(orjson.loads(payload))


@FUZZ
@given(body=responses_bodies)
async def test_responses_bodies_over_a_chat_upstream(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = chat_upstream
    await assert_well_formed(await make_proxy("chat"), "/v1/responses", body)


@FUZZ
@given(body=responses_bodies)
async def test_responses_bodies_passed_through(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = responses_upstream
    await assert_well_formed(await make_proxy("responses"), "/v1/responses", body)


@FUZZ
@given(body=chat_bodies)
async def test_chat_bodies_over_a_responses_upstream(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = responses_upstream
    await assert_well_formed(await make_proxy("responses"), "/v1/chat/completions", body)


@FUZZ
@given(body=chat_bodies)
async def test_chat_bodies_passed_through(
    make_proxy: MakeProxy, fake: FakeUpstream, body: dict[str, Any]
) -> None:
    fake.responder = chat_upstream
    await assert_well_formed(await make_proxy("chat"), "/v1/chat/completions", body)
