"""Responses object -> chat.completion: every mapping rule, failures, n > 1, golden fixtures."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from diglot.translators.content import annotations_to_chat
from diglot.translators.context import ChatContext, Options, RestoredTool
from diglot.translators.errors import UpstreamFailed
from diglot.translators.responses import (
    completion_to_responses,
    merge_chat_choices,
    response_to_chat,
)
from diglot.translators.usage import sum_chat_usage
from tests.response_context import DEFAULT_ECHO, counting_ids, make_context
from tests.validate import assert_valid_chat_completion, assert_valid_response

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "responses_chat"
USAGE = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 2},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 32,
}
CHAT_USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 12,
    "total_tokens": 32,
    "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 5,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def chat_context(
    *, include_usage: bool = False, include_logprobs: bool = False, **options: Any
) -> ChatContext:
    return ChatContext(
        completion_id="chatcmpl-test",
        created=1_700_000_000,
        model="client-model",
        options=Options(**options),
        new_id=counting_ids(),
        include_usage=include_usage,
        include_logprobs=include_logprobs,
    )


def upstream_response(
    output: list[dict[str, Any]], status: str = "completed", **fields: Any
) -> dict[str, Any]:
    """A full upstream Responses object (validated), as a Responses-only backend sends it."""
    body: dict[str, Any] = {
        "id": "resp_up",
        "object": "response",
        "created_at": 1_700_000_001,
        "status": status,
        "completed_at": 1_700_000_002 if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "model": "upstream-model",
        "output": output,
        "usage": USAGE,
        **DEFAULT_ECHO,
    }
    body.update(fields)
    assert_valid_response(body)
    return body


def text(value: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": value, "annotations": annotations or [], "logprobs": []}


def message(*parts: dict[str, Any], item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": list(parts),
    }


def function_call(
    call_id: str, name: str, payload: str, *, custom: bool = False, status: str = "completed"
) -> dict[str, Any]:
    """A `function_call` item, or with `custom` a `custom_tool_call` item (payload: input)."""
    return {
        "id": f"{'ctc' if custom else 'fc'}_{call_id}",
        "type": "custom_tool_call" if custom else "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "input" if custom else "arguments": payload,
    }


def reasoning(
    summary: list[str] | None = None, content: list[str] | None = None, item_id: str = "rs_1"
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": s} for s in summary or []],
    }
    if content is not None:
        item["content"] = [{"type": "reasoning_text", "text": c} for c in content]
    return item


def translate(response: dict[str, Any], ctx: ChatContext | None = None) -> dict[str, Any]:
    completion = response_to_chat(response, ctx or chat_context())
    assert_valid_chat_completion(completion)
    return completion


def only_message(completion: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = completion["choices"][0]
    return choice


def test_text_answer_gives_the_full_chat_completion() -> None:
    completion = translate(upstream_response([message(text("Hello!"))]))
    assert completion == {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "service_tier": "default",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello!",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": CHAT_USAGE,
    }


def test_model_falls_back_to_the_request_and_unknown_tiers_are_left_out() -> None:
    response = upstream_response([message(text("x"))], service_tier="flex")
    response["model"] = ""
    response["service_tier"] = "turbo"
    completion = response_to_chat(response, chat_context())
    assert (completion["model"], completion["service_tier"]) == ("client-model", None)
    assert_valid_chat_completion(completion)


def test_text_parts_join_in_order_with_citations_shifted_to_the_joined_text() -> None:
    cite = {
        "type": "url_citation",
        "start_index": 0,
        "end_index": 4,
        "url": "https://example.com/b",
        "title": "B",
    }
    response = upstream_response(
        [
            message(text("One. "), text("Two.", [cite])),
            function_call("call_1", "lookup", "{}"),
            message(text(" Three."), item_id="msg_2"),
        ]
    )
    choice = only_message(translate(response))
    assert choice["message"]["content"] == "One. Two. Three."
    assert choice["message"]["annotations"] == [
        {
            "type": "url_citation",
            "url_citation": {
                "start_index": 5,
                "end_index": 9,
                "url": "https://example.com/b",
                "title": "B",
            },
        }
    ]


def test_only_url_citations_have_a_chat_form() -> None:
    file_cite = {"type": "file_citation", "file_id": "file_1", "filename": "a.txt", "index": 0}
    assert annotations_to_chat([file_cite, "junk"], 3) == []
    assert annotations_to_chat(None, 0) == []


def test_refusal_only() -> None:
    refusal = {"type": "refusal", "refusal": "I can't help with that."}
    choice = only_message(translate(upstream_response([message(refusal)])))
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help with that.",
        "annotations": [],
    }
    assert choice["finish_reason"] == "stop"


def test_function_and_custom_tool_calls() -> None:
    response = upstream_response(
        [
            function_call("call_a", "get_weather", '{"city":"Paris"}'),
            function_call("call_b", "apply_patch", "*** Begin Patch\n*** End Patch", custom=True),
        ]
    )
    choice = only_message(translate(response))
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "custom",
                    "custom": {"name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
                },
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([reasoning(content=["Let me ", "think."])], "Let me think."),
        ([reasoning(summary=["First.", "Second."])], "First.\n\nSecond."),
        ([reasoning(summary=["Ignored."], content=["Raw."])], "Raw."),
        (
            [reasoning(summary=["A."]), reasoning(content=[]), reasoning(["B."], item_id="rs_2")],
            "A.\n\nB.",
        ),
    ],
    ids=["raw-text", "summary-parts", "raw-before-summary", "two-items"],
)
def test_reasoning_becomes_reasoning_content(items: list[dict[str, Any]], expected: str) -> None:
    choice = only_message(translate(upstream_response([*items, message(text("42"))])))
    assert choice["message"]["reasoning_content"] == expected
    assert choice["message"]["content"] == "42"


def test_reasoning_content_can_be_switched_off() -> None:
    response = upstream_response([reasoning(["Plan."]), message(text("42"))])
    choice = only_message(translate(response, chat_context(chat_reasoning_content=False)))
    assert "reasoning_content" not in choice["message"]


@pytest.mark.parametrize(
    ("reason", "output", "finish_reason"),
    [
        ("max_output_tokens", [message(text("Once upon"))], "length"),
        ("content_filter", [message(text("Well"))], "content_filter"),
        ("max_output_tokens", [function_call("call_1", "f", '{"a":')], "length"),
        (None, [message(text("x"))], "length"),
    ],
)
def test_incomplete_answers_keep_their_cut_off_reason(
    reason: str | None, output: list[dict[str, Any]], finish_reason: str
) -> None:
    details = {"reason": reason} if reason else None
    response = upstream_response(output, "incomplete", incomplete_details=details)
    assert only_message(translate(response))["finish_reason"] == finish_reason


def test_usage_absent_upstream_is_null() -> None:
    completion = translate(upstream_response([message(text("x"))], usage=None))
    assert completion["usage"] is None


def test_logprobs_only_when_asked() -> None:
    logprobs = [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
        },
        {"token": "!", "logprob": -0.2, "bytes": [33], "top_logprobs": []},
    ]
    part = {**text("Hi!"), "logprobs": logprobs}
    response = upstream_response([message(part)])
    assert only_message(translate(response))["logprobs"] is None
    asked = only_message(translate(response, chat_context(include_logprobs=True)))
    assert asked["logprobs"] == {
        "content": logprobs,
        "refusal": None,
    }


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            {"code": "rate_limit_exceeded", "message": "Slow down."},
            429,
            {"message": "Slow down.", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
        ),
        (
            {"code": "server_error", "message": "The model crashed."},
            500,
            {"message": "The model crashed.", "type": "server_error", "code": "server_error"},
        ),
        (
            {"code": "invalid_prompt", "message": "Flagged."},
            400,
            {
                "message": "Flagged.",
                "type": "invalid_request_error",
                "code": "invalid_prompt",
            },
        ),
        (
            {"code": "invalid_image_url", "message": "No."},
            400,
            {
                "message": "No.",
                "type": "invalid_request_error",
                "code": "invalid_image_url",
            },
        ),
        (
            None,
            500,
            {
                "message": "The upstream response ended with status 'failed'.",
                "type": "server_error",
                "code": "server_error",
            },
        ),
    ],
    ids=["rate-limit", "server-error", "invalid-prompt", "image", "no-error"],
)
def test_failed_response_raises_the_client_error(
    error: dict[str, Any] | None, status: int, body: dict[str, Any]
) -> None:
    response = upstream_response([], "failed", error=error)
    with pytest.raises(UpstreamFailed) as raised:
        response_to_chat(response, chat_context())
    assert raised.value.status == status
    assert raised.value.body == {"error": {**body, "param": None}}
    assert str(raised.value) == body["message"]


@pytest.mark.parametrize("status", ["cancelled", "in_progress", "queued", None])
def test_unfinished_response_is_a_server_error(status: str | None) -> None:
    response = {"id": "resp_up", "object": "response", "status": status, "output": []}
    with pytest.raises(UpstreamFailed) as raised:
        response_to_chat(response, chat_context())
    assert raised.value.status == 500
    assert raised.value.body["error"]["message"] == (
        f"The upstream response ended with status {status!r}."
    )


def test_merge_chat_choices_for_n_3() -> None:
    ctx = chat_context()
    answers = [
        upstream_response([message(text("Red."))]),
        upstream_response([function_call("call_1", "pick", "{}")]),
        upstream_response(
            [message(text("Blu"))], "incomplete", incomplete_details={"reason": "max_output_tokens"}
        ),
    ]
    completions = [response_to_chat(r, ctx, index) for index, r in enumerate(answers)]
    merged = merge_chat_choices(completions)
    assert_valid_chat_completion(merged)
    assert {k: v for k, v in merged.items() if k not in ("choices", "usage")} == {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "service_tier": "default",
        "system_fingerprint": None,
    }
    assert [(c["index"], c["finish_reason"]) for c in merged["choices"]] == [
        (0, "stop"),
        (1, "tool_calls"),
        (2, "length"),
    ]
    assert merged["choices"][0]["message"]["content"] == "Red."
    assert merged["choices"][1]["message"]["tool_calls"][0]["id"] == "call_1"
    assert merged["usage"] == {
        "prompt_tokens": 60,
        "completion_tokens": 36,
        "total_tokens": 96,
        "prompt_tokens_details": {"cached_tokens": 24, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 15,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_merge_renumbers_choices_and_keeps_null_usage() -> None:
    ctx = chat_context()
    completion = response_to_chat(upstream_response([message(text("a"))]), ctx)
    completion["usage"] = None
    merged = merge_chat_choices([completion, completion])
    assert [choice["index"] for choice in merged["choices"]] == [0, 1]
    assert merged["usage"] is None


def test_sum_chat_usage_adds_nested_counters_and_ignores_others() -> None:
    assert sum_chat_usage(
        [
            {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}, "note": "x"},
            {"prompt_tokens": 2, "prompt_tokens_details": {"cached_tokens": 3}, "flag": True},
        ]
    ) == {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
PATCH_CALL = {
    "id": "call_2",
    "type": "function",
    "function": {"name": "apply_patch", "arguments": '{"input":"diff\\n"}'},
}


@pytest.mark.parametrize(
    ("message_in", "message_back"),
    [
        ({"content": "Plain answer."}, {"content": "Plain answer."}),
        ({"content": None, "refusal": "No."}, {"content": None, "refusal": "No."}),
        (
            {"content": "Calling.", "reasoning_content": "Need data.", "tool_calls": [CALL]},
            {"content": "Calling.", "reasoning_content": "Need data.", "tool_calls": [CALL]},
        ),
        (
            {"content": None, "tool_calls": [PATCH_CALL]},
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_2",
                        "type": "custom",
                        "custom": {"name": "apply_patch", "input": "diff\n"},
                    }
                ],
            },
        ),
    ],
    ids=["text", "refusal", "reasoning-and-call", "custom-call"],
)
def test_round_trip_through_the_other_direction_keeps_the_message(
    message_in: dict[str, Any], message_back: dict[str, Any]
) -> None:
    """Chat answer -> Responses (the existing direction) -> Chat again: the same message."""
    calls = message_in.get("tool_calls")
    upstream_completion = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message_in},
                "finish_reason": "tool_calls" if calls else "stop",
                "logprobs": None,
            }
        ],
    }
    assert_valid_chat_completion(upstream_completion)
    custom = {"apply_patch": RestoredTool("custom", "apply_patch")}
    response = completion_to_responses(upstream_completion, make_context(tools=custom), now=2)
    back = only_message(translate(response))
    assert back["message"] == {
        "role": "assistant",
        "refusal": None,
        "annotations": [],
        **message_back,
    }
    assert back["finish_reason"] == ("tool_calls" if calls else "stop")


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    assert_valid_response(case["response"])
    ctx = chat_context(**case.get("context", {}))
    if "failed" in case:
        with pytest.raises(UpstreamFailed) as raised:
            response_to_chat(case["response"], ctx)
        assert [raised.value.status, raised.value.body] == case["failed"]
        return
    completion = response_to_chat(case["response"], ctx)
    assert completion == case["expected"]
    assert_valid_chat_completion(completion)


def test_malformed_upstream_answers_never_raise_anything_else() -> None:
    """Fixture answers with fields dropped or junk: a valid completion, or UpstreamFailed."""
    rng = random.Random(5)
    answers = [json.loads(path.read_text())["response"] for path in sorted(FIXTURES.glob("*.json"))]
    for _ in range(500):
        answer = rng.choice(answers)
        for _ in range(rng.randint(1, 3)):
            answer = mutate(answer, rng)
        try:
            completion = response_to_chat(answer, chat_context(include_logprobs=True))
        except UpstreamFailed as failed:
            assert failed.status in (400, 429, 500)
            continue
        assert_valid_chat_completion(completion)


GARBAGE: list[Any] = [None, 7, -1, "", "x", [], {}, [1], {"a": 1}, True, 2.5]


def mutate(value: Any, rng: random.Random) -> Any:
    """A copy with one field somewhere (possibly nested) dropped or replaced by junk."""
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.3:
            del copy[key]
        elif roll < 0.6:
            copy[key] = rng.choice(GARBAGE)
        else:
            copy[key] = mutate(value[key], rng)
        return copy
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        return [*value[:index], mutate(value[index], rng), *value[index + 1 :]]
    return rng.choice(GARBAGE)
