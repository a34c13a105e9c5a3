"""Responses request bodies -> Chat Completions request bodies (golden fixtures and errors)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

from diglot.translators.context import Options, RestoredTool
from diglot.translators.errors import RequestError
from diglot.translators.ids import IdMint
from diglot.translators.requests import ChatCall, request_to_chat
from diglot.translators.responses_models import decode_responses_request

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "requests"
CASES = sorted(FIXTURES.glob("*.json"))
UPSTREAM_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CHAT_STREAMING = TypeAdapter(CompletionCreateParamsStreaming)
CHAT_NON_STREAMING = TypeAdapter(CompletionCreateParamsNonStreaming)


def _ids() -> Iterator[str]:
    for number in range(1000):
        yield f"id{number}"


def translate(body: dict[str, Any], **options: Any) -> ChatCall:
    ids = _ids()
    return request_to_chat(
        decode_responses_request(orjson.dumps(body)),
        Options(**options),
        now=1_700_000_000,
        new_id=lambda prefix: f"{prefix}_{next(ids)}",
    )


def refused(body: dict[str, Any] | bytes, **options: Any) -> RequestError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(RequestError) as caught:
        request_to_chat(
            decode_responses_request(raw), Options(**options), now=1_700_000_000, new_id=IdMint()
        )
    return caught.value


def materialize(value: Any) -> Any:
    """pydantic validates `Iterable` fields lazily: walk them so every part is checked."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    return [materialize(item) for item in value]


def validate_chat(body: dict[str, Any]) -> None:
    adapter = CHAT_STREAMING if body.get("stream") else CHAT_NON_STREAMING
    materialize(adapter.validate_python(body))


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_golden_request(path: Path) -> None:
    case = json.loads(path.read_text())
    call = translate(case["request"], **case.get("options", {}))
    assert call.body == case["chat"]
    assert [dropped.param for dropped in call.dropped] == case["dropped"]
    restored = {
        upstream: {"kind": tool.kind, "name": tool.name, "namespace": tool.namespace}
        for upstream, tool in call.context.tools.by_upstream.items()
    }
    assert restored == case["tool_names"]
    validate_chat(call.body)
    names = [tool["function"]["name"] for tool in call.body.get("tools", [])]
    for message in call.body["messages"]:
        names.extend(call["function"]["name"] for call in message.get("tool_calls", []))
    assert all(UPSTREAM_NAME.match(name) for name in names)


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_extra_keys_take_the_general_decoder_to_the_same_result(path: Path) -> None:
    case = json.loads(path.read_text())
    call = translate({**case["request"], "x_backend_knob": [1]}, **case.get("options", {}))
    assert call.body.pop("x_backend_knob") == [1]
    assert call.body == case["chat"]


def test_golden_fixtures_exist() -> None:
    assert len(CASES) >= 15


def test_codex_tools_restore_to_the_clients_names() -> None:
    case = json.loads((FIXTURES / "codex_turn.json").read_text())
    tools = translate(case["request"]).context.tools
    assert tools.restore("apply_patch") == RestoredTool("custom", "apply_patch")
    assert tools.restore("mcp__docs__search") == RestoredTool("function", "search", "mcp__docs")
    assert tools.restore("exec_command") == RestoredTool("function", "exec_command")


def test_context_and_echo_defaults() -> None:
    call = translate({"model": "m", "input": "hi"})
    ctx = call.context
    assert (ctx.response_id, ctx.created_at, ctx.model) == ("resp_id0", 1_700_000_000, "m")
    assert ctx.include_logprobs is False
    assert ctx.echo == {
        "instructions": None,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
        "store": True,
        "background": False,
        "service_tier": "default",
        "safety_identifier": None,
        "prompt_cache_key": None,
        "prompt_cache_retention": None,
        "user": None,
    }


def test_echo_repeats_given_settings() -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}]
    schema = {"type": "object", "properties": {}}
    body = {
        "model": "m",
        "input": "hi",
        "instructions": "Be brief.",
        "tools": tools,
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.5,
        "top_logprobs": 2,
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": 100,
        "max_tool_calls": 2,
        "reasoning": {"effort": "high", "summary": "concise"},
        "text": {
            "format": {"type": "json_schema", "name": "s", "schema": schema},
            "verbosity": "high",
        },
        "truncation": "auto",
        "metadata": {"k": "v"},
        "store": False,
        "service_tier": "priority",
        "safety_identifier": "s",
        "prompt_cache_key": "p",
        "user": "u",
    }
    call = translate(body)
    echo = call.context.echo
    assert echo["tools"] is call.context.echo["tools"]
    assert echo["tools"] == [{**tools[0], "description": None}]
    assert echo["tool_choice"] == {"type": "function", "name": "f"}
    assert echo["parallel_tool_calls"] is False
    assert (echo["temperature"], echo["top_p"], echo["top_logprobs"]) == (0.5, 0.5, 2)
    assert (echo["max_output_tokens"], echo["max_tool_calls"]) == (100, 2)
    assert echo["reasoning"] == {"effort": "high", "summary": "concise"}
    assert echo["text"] == {
        "format": {"type": "json_schema", "name": "s", "schema": schema},
        "verbosity": "high",
    }
    assert (echo["truncation"], echo["metadata"], echo["store"]) == ("auto", {"k": "v"}, False)
    assert echo["instructions"] == "Be brief."
    assert (echo["service_tier"], echo["safety_identifier"], echo["user"]) == ("priority", "s", "u")
    assert call.context.include_logprobs is True
    assert [dropped.param for dropped in call.dropped] == ["max_tool_calls"]


def test_top_logprobs_without_include_asks_for_no_logprobs() -> None:
    call = translate({"model": "m", "input": "hi", "top_logprobs": 5})
    assert "logprobs" not in call.body and "top_logprobs" not in call.body
    assert call.context.include_logprobs is False


def test_extras_never_override_translated_fields() -> None:
    call = translate({"model": "m", "input": "hi", "messages": [], "top_k": 5})
    assert call.body["messages"] == [{"role": "user", "content": "hi"}]
    assert call.body["top_k"] == 5
    assert [dropped.param for dropped in call.dropped] == ["messages"]


def test_orphan_reasoning_is_dropped_not_shown() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "x"}],
    }
    call = translate({"model": "m", "input": [reasoning, {"role": "user", "content": "hi"}]})
    assert call.body["messages"] == [{"role": "user", "content": "hi"}]
    assert [dropped.param for dropped in call.dropped] == ["input[0]"]


def test_image_by_file_id_and_file_by_url_are_dropped() -> None:
    content = [
        {"type": "input_text", "text": "see"},
        {"type": "input_image", "file_id": "file-1", "detail": "auto"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
    ]
    call = translate({"model": "m", "input": [{"role": "user", "content": content}]})
    assert call.body["messages"] == [{"role": "user", "content": "see"}]
    assert [dropped.param for dropped in call.dropped] == [
        "input[0].content[1]",
        "input[0].content[2].file_url",
    ]


def test_hosted_tool_choice_is_dropped() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [{"type": "function", "name": "f"}, {"type": "file_search"}],
        "tool_choice": {"type": "file_search"},
    }
    call = translate(body)
    assert "tool_choice" not in call.body
    assert [dropped.param for dropped in call.dropped] == ["tools[1]", "tool_choice"]


def test_names_are_deterministic_and_unique() -> None:
    tools = [{"type": "function", "name": f"{'n' * 80}{index}"} for index in range(50)]
    tools += [{"type": "function", "name": f"a.b{index}"} for index in range(5)]
    tools += [{"type": "function", "name": f"a_b{index}"} for index in range(5)]
    first = translate({"model": "m", "input": "hi", "tools": tools})
    second = translate({"model": "m", "input": "hi", "tools": tools})
    names = [tool["function"]["name"] for tool in first.body["tools"]]
    assert names == [tool["function"]["name"] for tool in second.body["tools"]]
    assert len(set(names)) == len(names) == 60
    assert all(UPSTREAM_NAME.match(name) for name in names)
    assert names[55:] == [f"a_b{index}" for index in range(5)]
    restored = [first.context.tools.restore(name).name for name in names]
    assert restored == [tool["name"] for tool in tools]


def test_max_tokens_field_option() -> None:
    assert translate({"model": "m", "input": "x", "max_output_tokens": 9}).body["max_tokens"] == 9
    call = translate(
        {"model": "m", "input": "x", "max_output_tokens": 9},
        max_tokens_field="max_completion_tokens",
    )
    assert call.body["max_completion_tokens"] == 9 and "max_tokens" not in call.body


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"", None, "invalid_json"),
        (b"[" * 100_000, None, "invalid_json"),
        (b"[1, 2]", None, "invalid_type"),
        (b'"text"', None, "invalid_type"),
        ({"input": "hi"}, "model", "missing_required_parameter"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": 3, "input": "hi"}, "model", "invalid_type"),
        ({"model": "m", "input": 3}, "input", "invalid_type"),
        ({"model": "m", "input": "hi", "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": "m", "input": "hi", "temperature": 3}, "temperature", "invalid_value"),
        ({"model": "m", "input": "hi", "top_p": 1.5}, "top_p", "invalid_value"),
        ({"model": "m", "input": "hi", "tools": [{"type": "bogus"}]}, "tools[0].type", None),
        (
            {"model": "m", "input": "hi", "max_output_tokens": 0},
            "max_output_tokens",
            "invalid_value",
        ),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "m", "input": "hi", "metadata": {"a": 1}}, "metadata", "invalid_type"),
        ({"model": "m", "input": "hi", "reasoning": {"effort": "max"}}, "reasoning.effort", None),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name", None),
        ({"model": "m", "input": "hi", "tools": ["f"]}, "tools[0]", "invalid_type"),
        (
            {"model": "m", "input": "hi", "tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}],
            },
            "tools[0].tools[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": "hi", "tools": [{"name": "f"}]},
            "tools[0].type",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": "hi", "tools": [{"type": 3}]}, "tools[0].type", "invalid_type"),
        ({"model": "m", "input": ["hi"]}, "input[0]", "invalid_type"),
        ({"model": "m", "input": [{"type": "bogus"}]}, "input[0].type", "invalid_value"),
        ({"model": "m", "input": [{"content": "hi"}]}, "input[0].type", "invalid_value"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role", None),
        ({"model": "m", "input": [{"role": "user"}]}, "input[0].content", None),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "user", "content": [{"type": "input_image", "image_url": 5}]},
                ],
            },
            "input[2].content[0].image_url",
            "invalid_type",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].id", None),
        ({"model": "m", "input": [{"id": "msg_1"}]}, "input[0].id", "unsupported_value"),
        (
            {"model": "m", "input": "hi", "previous_response_id": "resp_1"},
            "previous_response_id",
            "unsupported_parameter",
        ),
        ({"model": "m", "input": "hi", "conversation": "conv_1"}, "conversation", None),
        ({"model": "m", "input": "hi", "background": True}, "background", None),
        ({"model": "m", "input": "hi", "tool_choice": "always"}, "tool_choice", None),
        ({"model": "m", "input": "hi", "tool_choice": {}}, "tool_choice.type", None),
        ({"model": "m", "input": "hi", "tool_choice": {"type": "x"}}, "tool_choice.type", None),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function"},
            },
            "tool_choice.name",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": 3},
            },
            "tool_choice.name",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "f", "namespace": 3},
            },
            "tool_choice.namespace",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": {}},
            },
            "tool_choice.tools",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "g"},
            },
            "tool_choice.name",
            None,
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "tool_choice": {"type": "allowed_tools", "mode": "x", "tools": []},
            },
            "tool_choice.mode",
            None,
        ),
        (
            {
                "model": "m",
                "input": "hi",
                "text": {"format": {"type": "json_schema", "schema": {}}},
            },
            "text.format.name",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}
                ],
            },
            "input[0].content[0].type",
            None,
        ),
        (
            {
                "model": "m",
                "input": [
                    {
                        "role": "system",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                        ],
                    }
                ],
            },
            "input[0].content[0].type",
            None,
        ),
    ],
)
def test_bad_requests_name_the_field(
    body: dict[str, Any] | bytes, param: str | None, code: str | None
) -> None:
    error = refused(body)
    assert error.status == 400
    assert error.param == param
    if code is not None:
        assert error.code == code
    envelope = error.body()["error"]
    assert envelope["type"] == "invalid_request_error"
    assert envelope["param"] == param
    assert envelope["message"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"model": "m", "input": "hi", "previous_response_id": "resp_1"},
            {
                "message": "Continuing from 'previous_response_id' needs the stored turns it "
                "names, and none were resolved for this request; send the whole conversation "
                "in 'input'.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "unsupported_parameter",
            },
        ),
        (
            {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]},
            {
                "message": "Input items of type 'item_reference' need the stored item they "
                "name, and none was resolved for this request; send the referenced item itself.",
                "type": "invalid_request_error",
                "param": "input[0].id",
                "code": "unsupported_value",
            },
        ),
        (
            {"model": "m", "input": "hi", "conversation": "conv_1"},
            {
                "message": "A 'conversation' needs its stored items, and none were resolved for "
                "this request; POST /v1/responses takes one, or send the whole conversation in "
                "'input'.",
                "type": "invalid_request_error",
                "param": "conversation",
                "code": "unsupported_parameter",
            },
        ),
    ],
)
def test_state_left_unresolved_is_refused_saying_what_diglot_keeps(
    body: dict[str, Any], error: dict[str, Any]
) -> None:
    """diglot stores responses (the proxy resolves ids and references before translating);
    only state it was not given, and conversation objects, are refused."""
    assert refused(body).body() == {"error": error}


def test_a_resolved_previous_response_id_is_not_refused() -> None:
    history = decode_responses_request(
        b'{"model": "m", "input": [{"role": "user", "content": "before"}]}'
    ).input
    assert not isinstance(history, str)
    request = decode_responses_request(
        b'{"model": "m", "input": "after", "previous_response_id": "resp_1"}'
    )
    call = request_to_chat(request, Options(), now=0, new_id=IdMint(), history=history)
    assert call.body["messages"] == [
        {"role": "user", "content": "before"},
        {"role": "user", "content": "after"},
    ]
    assert call.context.echo["previous_response_id"] == "resp_1"


def test_background_false_is_accepted() -> None:
    assert translate({"model": "m", "input": "hi", "background": False}).dropped == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"model": "m", "input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}, "input[0]"),
    ],
)
def test_strict_refuses_what_would_be_dropped(body: dict[str, Any], param: str) -> None:
    assert [dropped.param for dropped in translate(body).dropped] == [param]
    error = refused(body, strict=True)
    assert (error.param, error.code) == (param, "unsupported_parameter")


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
FIELDS = st.sampled_from(
    ["model", "input", "tools", "tool_choice", "text", "reasoning", "include", "instructions"]
)
ITEM_TYPES = st.sampled_from(
    ["message", "function_call", "function_call_output", "custom_tool_call", "reasoning", None]
)
ITEM = st.builds(
    lambda kind, role, content, extra: {
        **extra,
        **({"type": kind} if kind else {}),
        "role": role,
        "content": content,
    },
    ITEM_TYPES,
    st.sampled_from(["user", "assistant", "system", "developer", 3]),
    JSON,
    st.dictionaries(st.sampled_from(["call_id", "name", "arguments", "output", "summary"]), JSON),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(FIELDS, JSON, max_size=6),
    st.lists(ITEM, max_size=4),
    st.booleans(),
)
def test_any_body_translates_or_is_refused(
    fields: dict[str, Any], items: list[dict[str, Any]], strict: bool
) -> None:
    body = {"model": "m", "input": items, **fields}
    try:
        call = request_to_chat(
            decode_responses_request(msgspec.json.encode(body)),
            Options(strict=strict),
            now=0,
            new_id=IdMint(),
        )
    except RequestError as error:
        assert error.status == 400
        return
    msgspec.json.encode(call.body)
    msgspec.json.encode(call.context.echo)


def test_developer_messages_follow_the_instructions_role() -> None:
    body = {
        "model": "m",
        "instructions": "I",
        "input": [
            {"type": "message", "role": "developer", "content": "D"},
            {"type": "message", "role": "system", "content": "S"},
        ],
    }
    assert translate(body, instructions_role="developer").body["messages"] == [
        {"role": "developer", "content": "I"},
        {"role": "developer", "content": "D"},
        {"role": "system", "content": "S"},
    ]


def test_reasoning_after_an_open_assistant_turn_joins_its_tool_calls() -> None:
    def thought(text: str) -> dict[str, Any]:
        return {
            "type": "reasoning",
            "id": "rs",
            "summary": [{"type": "summary_text", "text": text}],
        }

    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "go"},
            thought("first"),
            {"role": "assistant", "content": "Running two tools."},
            thought("second"),
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "1"},
            {"type": "function_call_output", "call_id": "c2", "output": "2"},
        ],
    }
    calls = [
        {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for n in (1, 2)
    ]
    assert translate(body).body["messages"] == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "Running two tools.",
            "reasoning_content": "first\n\nsecond",
            "tool_calls": calls,
        },
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "tool", "tool_call_id": "c2", "content": "2"},
    ]


def test_a_bare_tool_choice_name_shared_by_two_namespaces_is_refused() -> None:
    group = [{"type": "function", "name": "search"}]
    body = {
        "model": "m",
        "input": "hi",
        "tools": [
            {"type": "namespace", "name": "a", "description": "A", "tools": group},
            {"type": "namespace", "name": "b", "description": "B", "tools": group},
        ],
        "tool_choice": {"type": "function", "name": "search"},
    }
    assert refused(body).param == "tool_choice.name"
    body["tool_choice"] = {"type": "function", "name": "search", "namespace": "b"}
    assert translate(body).body["tool_choice"] == {
        "type": "function",
        "function": {"name": "b__search"},
    }


def test_reasoning_text_prefers_raw_content_over_summary() -> None:
    item = {
        "type": "reasoning",
        "id": "rs",
        "summary": [{"type": "summary_text", "text": "short"}],
        "content": [{"type": "reasoning_text", "text": "long form"}],
    }
    messages = translate(
        {"model": "m", "input": [item, {"role": "assistant", "content": "ok"}]}
    ).body["messages"]
    assert messages == [{"role": "assistant", "content": "ok", "reasoning_content": "long form"}]


def test_echoed_function_tools_carry_their_nullable_keys() -> None:
    bare = {"type": "function", "name": "f"}
    hosted = {"type": "web_search"}
    call = translate({"model": "m", "input": "hi", "tools": [bare, hosted]})
    assert call.context.echo["tools"] == [
        {"type": "function", "name": "f", "description": None, "parameters": None, "strict": None},
        hosted,
    ]


@pytest.mark.parametrize("kind", [["x"], {"a": 1}, 3])
def test_an_item_type_that_is_not_a_string_is_a_400_naming_it(kind: object) -> None:
    body = orjson.dumps({"model": "m", "input": [{"type": kind, "content": "hi"}]})
    with pytest.raises(RequestError) as refused:
        decode_responses_request(body)
    assert refused.value.param == "input[0].type"
    assert refused.value.code == "invalid_value"
