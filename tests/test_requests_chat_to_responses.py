"""Chat Completions request bodies -> Responses request bodies (golden fixtures and errors)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diglot.translators.chat_models import decode_chat_request
from diglot.translators.context import Options
from diglot.translators.errors import RequestError
from diglot.translators.ids import IdMint
from diglot.translators.requests import ResponsesCall, request_to_responses
from tests.response_context import counting_ids
from tests.validate import assert_refusal, assert_valid_create_body

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "requests_chat"
CASES = sorted(FIXTURES.glob("*.json"))
HI = [{"role": "user", "content": "hi"}]


def translate(body: dict[str, Any], **options: Any) -> ResponsesCall:
    return request_to_responses(
        decode_chat_request(orjson.dumps(body)),
        Options(**options),
        now=1_700_000_000,
        new_id=counting_ids(),
    )


def refused(body: dict[str, Any] | bytes, **options: Any) -> RequestError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(RequestError) as caught:
        request_to_responses(
            decode_chat_request(raw), Options(**options), now=1_700_000_000, new_id=IdMint()
        )
    return caught.value


def dropped(call: ResponsesCall) -> list[str]:
    return [item.param for item in call.dropped]


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_golden_request(path: Path) -> None:
    case = json.loads(path.read_text())
    call = translate(case["request"], **case.get("options", {}))
    assert call.body == case["responses"]
    assert dropped(call) == case["dropped"]
    assert_valid_create_body(call.body)


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_extra_keys_take_the_general_decoder_to_the_same_result(path: Path) -> None:
    case = json.loads(path.read_text())
    call = translate({**case["request"], "x_backend_knob": [1]}, **case.get("options", {}))
    assert call.body.pop("x_backend_knob") == [1]
    assert call.body == case["responses"]
    assert dropped(call) == case["dropped"]


def test_golden_fixtures_exist() -> None:
    assert len(CASES) >= 25


def test_context_for_the_way_back() -> None:
    body = {"model": "m", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    call = translate({**body, "logprobs": True})
    ctx = call.context
    assert (ctx.completion_id, ctx.created, ctx.model) == ("chatcmpl-0", 1_700_000_000, "m")
    assert (ctx.include_usage, ctx.include_logprobs) == (True, True)
    assert ctx.options == Options()
    assert ctx.new_id("chatcmpl") == "chatcmpl_1"
    plain = translate({"model": "m", "messages": HI}).context
    assert (plain.include_usage, plain.include_logprobs) == (False, False)


def test_completion_ids_look_like_openais() -> None:
    mint = IdMint()
    call = request_to_responses(
        decode_chat_request(orjson.dumps({"model": "m", "messages": HI})),
        Options(),
        now=0,
        new_id=mint,
    )
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{20,}", call.context.completion_id)
    assert call.context.new_id is mint
    other = request_to_responses(
        decode_chat_request(orjson.dumps({"model": "m", "messages": HI})),
        Options(),
        now=0,
        new_id=mint,
    )
    assert other.context.completion_id != call.context.completion_id


@pytest.mark.parametrize(("n", "expected"), [(None, 1), (1, 1), (4, 4), (128, 128)])
def test_n_is_kept_for_the_fan_out_not_sent(n: int | None, expected: int) -> None:
    body: dict[str, Any] = {"model": "m", "messages": HI}
    if n is not None:
        body["n"] = n
    call = translate(body)
    assert call.n == expected
    assert "n" not in call.body
    assert call.dropped == []


def test_reasoning_and_assistant_items_get_fresh_ids() -> None:
    messages = [
        *HI,
        {"role": "assistant", "content": "a", "reasoning_content": "r"},
        {"role": "user", "content": "again"},
    ]
    call = request_to_responses(
        decode_chat_request(orjson.dumps({"model": "m", "messages": messages})),
        Options(),
        now=0,
        new_id=IdMint(),
    )
    reasoning, message = call.body["input"][1:3]
    assert re.fullmatch(r"rs_[0-9a-f]{48}", reasoning["id"])
    assert re.fullmatch(r"msg_[0-9a-f]{48}", message["id"])
    assert_valid_create_body(call.body)


def test_hoisting_keeps_the_clients_message_indexes() -> None:
    messages = [
        {"role": "system", "content": "S", "name": "ops"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "again", "name": "ann"},
    ]
    call = translate({"model": "m", "messages": messages}, hoist_system=True)
    assert call.body["instructions"] == "S"
    assert dropped(call) == ["messages[0].name", "messages[2].name"]
    forwarded = translate(
        {"model": "m", "messages": messages}, hoist_system=True, forward_chat_only_params=True
    )
    assert dropped(forwarded) == ["messages[0].name"]
    assert forwarded.body["input"][1]["name"] == "ann"


def test_tool_choice_wins_over_legacy_function_call() -> None:
    body = {
        "model": "m",
        "messages": HI,
        "tools": [{"type": "function", "function": {"name": "a"}}],
        "functions": [{"name": "b"}],
        "tool_choice": {"type": "function", "function": {"name": "b"}},
        "function_call": "none",
    }
    call = translate(body)
    assert [tool["name"] for tool in call.body["tools"]] == ["a", "b"]
    assert call.body["tool_choice"] == {"type": "function", "name": "b"}
    assert dropped(call) == ["function_call"]


def test_tool_calls_and_custom_outputs_pair_by_call_id() -> None:
    messages = [
        *HI,
        {
            "role": "assistant",
            "tool_calls": [{"id": "x", "type": "custom", "custom": {"name": "c", "input": "i"}}],
        },
        {"role": "tool", "tool_call_id": "y", "content": "unknown call"},
        {"role": "tool", "tool_call_id": "x", "content": "ok"},
    ]
    items = translate({"model": "m", "messages": messages}).body["input"]
    assert [item["type"] for item in items[1:]] == [
        "custom_tool_call",
        "function_call_output",
        "custom_tool_call_output",
    ]


def test_legacy_function_results_answer_calls_in_order() -> None:
    def call(arguments: str) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "f", "arguments": arguments},
        }

    messages = [
        *HI,
        call("1"),
        call("2"),
        {"role": "function", "name": "f", "content": "one"},
        {"role": "function", "name": "f", "content": None},
    ]
    items = translate({"model": "m", "messages": messages}).body["input"][1:]
    assert [(item["call_id"], item.get("arguments", item.get("output"))) for item in items] == [
        ("call_0", "1"),
        ("call_1", "2"),
        ("call_0", "one"),
        ("call_1", ""),
    ]


def test_extras_never_override_translated_fields() -> None:
    body = {
        "model": "m",
        "messages": HI,
        "input": "other",
        "reasoning_effort": "high",
        "reasoning": {"effort": "low", "summary": "auto"},
        "truncation": "auto",
    }
    call = translate(body)
    assert call.body["input"] == [{"type": "message", "role": "user", "content": "hi"}]
    assert call.body["reasoning"] == {"effort": "high"}
    assert call.body["truncation"] == "auto"
    assert dropped(call) == ["input", "reasoning"]
    alone = translate({"model": "m", "messages": HI, "reasoning": {"summary": "auto"}})
    assert alone.body["reasoning"] == {"summary": "auto"}


def test_background_mode_is_not_passed_on() -> None:
    call = translate({"model": "m", "messages": HI, "background": True})
    assert "background" not in call.body
    assert dropped(call) == ["background"]
    quiet = translate({"model": "m", "messages": HI, "background": False})
    assert quiet.body["background"] is False


def test_small_token_limits_are_passed_as_given() -> None:
    """OpenAI wants at least 16; other backends take less, and clamping would answer longer."""
    assert translate({"model": "m", "messages": HI, "max_tokens": 1}).body["max_output_tokens"] == 1


def test_store_is_off_unless_the_client_asks() -> None:
    assert translate({"model": "m", "messages": HI}).body["store"] is False
    assert translate({"model": "m", "messages": HI, "store": True}).body["store"] is True


def test_stream_false_and_options_without_stream_send_no_stream_fields() -> None:
    body = {
        "model": "m",
        "messages": HI,
        "stream": False,
        "stream_options": {"include_usage": True},
    }
    call = translate(body)
    assert "stream" not in call.body and "stream_options" not in call.body
    assert_valid_create_body(call.body)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"", None, "invalid_json"),
        (b"[" * 100_000, None, "invalid_json"),
        (b"[1, 2]", None, "invalid_type"),
        ({"messages": HI}, "model", "missing_required_parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "invalid_value"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", None),
        ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", None),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", None),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]},
                ],
            },
            "messages[2].content[0].image_url.url",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {}}]}
                ],
            },
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "assistant", "tool_calls": [{"type": "function", "id": "c"}]},
                ],
            },
            "messages[0].tool_calls[0].function",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": HI, "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": "m", "messages": HI, "temperature": 2.5}, "temperature", "invalid_value"),
        ({"model": "m", "messages": HI, "top_p": -0.1}, "top_p", "invalid_value"),
        ({"model": "m", "messages": HI, "n": 0}, "n", "invalid_value"),
        ({"model": "m", "messages": HI, "n": 129}, "n", "invalid_value"),
        ({"model": "m", "messages": HI, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "m", "messages": HI, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
        ({"model": "m", "messages": HI, "metadata": {"a": 1}}, "metadata", "invalid_type"),
        ({"model": "m", "messages": HI, "reasoning_effort": "max"}, "reasoning_effort", None),
        ({"model": "m", "messages": HI, "logit_bias": {"1": 101}}, "logit_bias", "invalid_value"),
        ({"model": "m", "messages": HI, "stream": "yes"}, "stream", "invalid_type"),
        (
            {"model": "m", "messages": HI, "tools": [{"type": "function"}]},
            "tools[0].function",
            None,
        ),
        ({"model": "m", "messages": HI, "tools": [{"type": "web_search"}]}, "tools[0].type", None),
        ({"model": "m", "messages": HI, "tool_choice": "always"}, "tool_choice", "invalid_value"),
        (
            {"model": "m", "messages": HI, "tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "tools": [{"type": "custom", "custom": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
            "tool_choice.function.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "custom", "custom": {"name": "f"}},
            },
            "tool_choice.custom.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": "auto",
                        "tools": [
                            {"type": "function", "function": {"name": "f"}},
                            {"type": "function", "function": {"name": "g"}},
                        ],
                    },
                },
            },
            "tool_choice.allowed_tools.tools[1].function.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "none"}},
            },
            "tool_choice.allowed_tools.mode",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": HI, "function_call": {"name": "f"}},
            "function_call.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x"}},
            },
            "response_format.json_schema.schema",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": HI, "response_format": {"type": "xml"}},
            "response_format.type",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": HI,
                "web_search_options": {"user_location": {"type": "exact", "approximate": {}}},
            },
            "web_search_options.user_location.type",
            "invalid_value",
        ),
    ],
)
def test_bad_requests_name_the_field(
    body: dict[str, Any] | bytes, param: str | None, code: str | None
) -> None:
    assert_refusal(refused(body), param, code)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": HI, "stop": "x"}, "stop"),
        ({"model": "m", "messages": HI, "presence_penalty": 1}, "presence_penalty"),
        ({"model": "m", "messages": HI, "modalities": ["audio"]}, "modalities"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "name": "a"}]},
            "messages[0].name",
        ),
        (
            {"model": "m", "messages": HI, "max_tokens": 20, "max_completion_tokens": 20},
            "max_tokens",
        ),
        ({"model": "m", "messages": HI, "input": "x"}, "input"),
    ],
)
def test_strict_refuses_what_would_be_dropped(body: dict[str, Any], param: str) -> None:
    assert dropped(translate(body)) == [param]
    assert_refusal(refused(body, strict=True), param, "unsupported_parameter")


def test_strict_accepts_forwarded_chat_only_params() -> None:
    body = {"model": "m", "messages": HI, "stop": "x", "logit_bias": {"1": 5}}
    call = translate(body, strict=True, forward_chat_only_params=True)
    assert (call.body["stop"], call.body["logit_bias"], call.dropped) == ("x", {"1": 5}, [])


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
NAME = st.sampled_from(["f", "g", "c"])
CALL_ID = st.sampled_from(["call_1", "call_2", ""])
TEXT = st.text(max_size=5)


def sometimes(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, now and then any JSON at all."""
    return st.one_of(*[value] * 7, JSON)


PART = st.one_of(
    st.builds(lambda text: {"type": "text", "text": text}, TEXT),
    st.builds(
        lambda url, detail: {"type": "image_url", "image_url": {"url": url, **detail}},
        TEXT,
        st.sampled_from([{}, {"detail": "low"}]),
    ),
    st.builds(
        lambda fmt: {"type": "input_audio", "input_audio": {"data": "AA==", "format": fmt}},
        st.sampled_from(["wav", "mp3"]),
    ),
    st.builds(lambda file: {"type": "file", "file": file}, st.sampled_from([{}, {"file_id": "x"}])),
    st.builds(lambda text: {"type": "refusal", "refusal": text}, TEXT),
)
TEXTS = st.one_of(TEXT, st.lists(st.builds(lambda text: {"type": "text", "text": text}, TEXT)))
TOOL_CALL = st.one_of(
    st.builds(
        lambda call_id, name: {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": "{}"},
        },
        CALL_ID,
        NAME,
    ),
    st.builds(
        lambda call_id, name: {
            "id": call_id,
            "type": "custom",
            "custom": {"name": name, "input": ""},
        },
        CALL_ID,
        NAME,
    ),
)
ASSISTANT_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "tool_calls": sometimes(st.lists(TOOL_CALL, max_size=2)),
        "function_call": sometimes(st.builds(lambda name: {"name": name, "arguments": ""}, NAME)),
        "reasoning_content": sometimes(TEXT),
        "refusal": sometimes(TEXT),
        "name": sometimes(TEXT),
    },
)
MESSAGE = st.one_of(
    st.builds(
        lambda role, content, name: {"role": role, "content": content, **name},
        st.sampled_from(["system", "developer"]),
        sometimes(TEXTS),
        st.sampled_from([{}, {"name": "n"}]),
    ),
    st.builds(
        lambda content: {"role": "user", "content": content},
        sometimes(st.one_of(TEXT, st.lists(PART.filter(lambda p: p["type"] != "refusal")))),
    ),
    st.builds(
        lambda content, extras: {"role": "assistant", "content": content, **extras},
        sometimes(
            st.one_of(
                st.none(), TEXT, st.lists(PART.filter(lambda p: p["type"] in ("text", "refusal")))
            )
        ),
        ASSISTANT_EXTRAS,
    ),
    st.builds(
        lambda call_id, content: {"role": "tool", "tool_call_id": call_id, "content": content},
        sometimes(CALL_ID),
        sometimes(TEXTS),
    ),
    st.builds(
        lambda name, content: {"role": "function", "name": name, "content": content},
        sometimes(NAME),
        sometimes(st.one_of(st.none(), TEXT)),
    ),
)
TOOL = st.one_of(
    st.builds(lambda name: {"type": "function", "function": {"name": name}}, NAME),
    st.builds(lambda name: {"type": "custom", "custom": {"name": name}}, NAME),
)
CHOICE = st.one_of(
    st.sampled_from(["none", "auto", "required"]),
    st.builds(lambda name: {"type": "function", "function": {"name": name}}, NAME),
    st.builds(lambda name: {"type": "custom", "custom": {"name": name}}, NAME),
    st.builds(
        lambda tools: {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": tools}},
        st.lists(TOOL, max_size=2),
    ),
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "tools": sometimes(st.lists(TOOL, max_size=3)),
        "tool_choice": sometimes(CHOICE),
        "functions": sometimes(st.lists(st.builds(lambda name: {"name": name}, NAME), max_size=2)),
        "function_call": sometimes(
            st.one_of(st.just("auto"), st.builds(lambda n: {"name": n}, NAME))
        ),
        "response_format": sometimes(
            st.sampled_from([{"type": "text"}, {"type": "json_object"}, {"type": "json_schema"}])
        ),
        "stream": sometimes(st.booleans()),
        "stream_options": sometimes(st.just({"include_usage": True})),
        "web_search_options": sometimes(st.just({"search_context_size": "low"})),
        "max_tokens": sometimes(st.integers(16, 10_000)),
        "max_completion_tokens": sometimes(st.integers(16, 10_000)),
        "n": sometimes(st.integers(1, 128)),
        "logprobs": sometimes(st.booleans()),
        "stop": sometimes(TEXT),
        "modalities": sometimes(st.just(["text", "audio"])),
        "top_k": JSON,
        "input": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(FIELDS, st.lists(MESSAGE, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_any_body_translates_or_is_refused(
    fields: dict[str, Any], messages: list[dict[str, Any]], strict: bool, hoist: bool
) -> None:
    body = {"model": "m", "messages": messages, **fields}
    options = Options(strict=strict, hoist_system=hoist)
    try:
        call = request_to_responses(
            decode_chat_request(msgspec.json.encode(body)), options, now=0, new_id=IdMint()
        )
    except RequestError as error:
        assert error.status == 400
        return
    assert 1 <= call.n <= 128
    assert_valid_create_body(call.body)
