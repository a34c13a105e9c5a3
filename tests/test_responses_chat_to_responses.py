"""Chat completion -> Responses object: every mapping rule, golden fixtures, shape validation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from diglot.translators.context import RestoredTool
from diglot.translators.reasoning import ThinkSplitter
from diglot.translators.responses import completion_to_responses
from diglot.translators.tools import CustomInputDecoder, custom_arguments_to_responses
from diglot.translators.usage import usage_to_responses
from tests.response_context import DEFAULT_ECHO, context_from_fixture, make_context
from tests.validate import assert_valid_chat_completion, assert_valid_response

NOW = 1_700_000_005
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "responses"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
MAPPED_USAGE = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 18,
}


def completion(
    message: dict[str, Any], finish_reason: str = "stop", **extra: Any
) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_001,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, **message},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": USAGE,
        **extra,
    }
    return body


def translate(body: dict[str, Any], **context: Any) -> dict[str, Any]:
    response = completion_to_responses(body, make_context(**context), now=NOW)
    assert_valid_response(response)
    return response


def text_part(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def message(
    parts: list[dict[str, Any]], status: str = "completed", n: int = 0, phase: str = "final_answer"
) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": parts,
        "phase": phase,
    }


def test_plain_answer_gives_the_full_response_object() -> None:
    body = completion({"content": "Hello!"})
    assert_valid_chat_completion(body)
    assert translate(body) == {
        "id": "resp_test",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "completed_at": NOW,
        "error": None,
        "incomplete_details": None,
        "model": "upstream-model",
        "output": [message([text_part("Hello!")])],
        "usage": MAPPED_USAGE,
        **DEFAULT_ECHO,
    }


def test_echoed_settings_are_merged_and_model_falls_back_to_the_request() -> None:
    body = completion({"content": "x"})
    del body["model"]
    response = translate(body, echo={"temperature": 0.2, "metadata": {"k": "v"}})
    assert response["model"] == "client-model"
    assert response["temperature"] == 0.2
    assert response["metadata"] == {"k": "v"}


def test_reasoning_content_becomes_a_summary_before_the_message() -> None:
    """By default the reasoning is the item's one summary part, as OpenAI sends summaries."""
    response = translate(completion({"content": "42", "reasoning_content": "Think."}))
    assert response["output"] == [
        {
            "id": "rs_0",
            "type": "reasoning",
            "status": "completed",
            "summary": [{"type": "summary_text", "text": "Think."}],
        },
        message([text_part("42")]),
    ]


def test_reasoning_field_and_text_mode() -> None:
    response = translate(
        completion({"content": "42", "reasoning": "Think."}), reasoning_events="text"
    )
    assert response["output"][0] == {
        "id": "rs_0",
        "type": "reasoning",
        "status": "completed",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Think."}],
    }


def test_leading_think_block_is_split_off_the_answer() -> None:
    body = completion({"content": "<think>\nPlan it.\n</think>\n\nDone."})
    response = translate(body)
    assert response["output"][0]["summary"] == [{"type": "summary_text", "text": "Plan it."}]
    assert "content" not in response["output"][0]
    assert response["output"][1] == message([text_part("Done.")])


def test_think_tags_left_alone_when_disabled_or_not_leading() -> None:
    kept = translate(completion({"content": "<think>a</think>b"}), think_tags=False)
    assert kept["output"] == [message([text_part("<think>a</think>b")])]
    later = translate(completion({"content": "x <think>a</think>"}))
    assert later["output"] == [message([text_part("x <think>a</think>")])]


def test_refusal_is_a_refusal_part() -> None:
    response = translate(completion({"refusal": "I can't help with that."}))
    assert response["output"] == [
        message([{"type": "refusal", "refusal": "I can't help with that."}])
    ]


def test_logprobs_are_mapped_when_requested() -> None:
    body = completion({"content": "Hi"})
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": None,
                "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    assert_valid_chat_completion(body)
    expected = [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
        }
    ]
    assert translate(body, include_logprobs=True)["output"][0]["content"] == [
        text_part("Hi", expected)
    ]
    assert translate(body)["output"][0]["content"] == [text_part("Hi")]


def tool_call(call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id:
        call["id"] = call_id
    return call


def test_tool_calls_become_function_call_items_in_order() -> None:
    calls = [tool_call("call_a", "get_weather", '{"city":"Paris"}'), tool_call(None, "now", "{}")]
    response = translate(completion({"tool_calls": calls}, "tool_calls"))
    assert response["status"] == "completed"
    assert response["output"] == [
        {
            "id": "fc_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_0",
            "name": "now",
            "arguments": "{}",
        },
    ]


def test_custom_and_namespaced_tools_are_restored() -> None:
    tools = {
        "apply_patch": RestoredTool("custom", "apply_patch"),
        "mcp__fs__read": RestoredTool("function", "read", "mcp__fs"),
    }
    calls = [
        tool_call("call_p", "apply_patch", json.dumps({"input": "*** Begin Patch\n*** End Patch"})),
        tool_call("call_r", "mcp__fs__read", '{"path":"a"}'),
    ]
    response = translate(
        completion({"content": "Patching.", "tool_calls": calls}, "tool_calls"), tools=tools
    )
    assert response["output"] == [
        message([text_part("Patching.")], phase="commentary"),
        {
            "id": "ctc_0",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_p",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** End Patch",
        },
        {
            "id": "fc_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_r",
            "name": "read",
            "arguments": '{"path":"a"}',
            "namespace": "mcp__fs",
        },
    ]


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_cut_off_answers_are_incomplete(finish_reason: str, reason: str) -> None:
    response = translate(
        completion({"reasoning_content": "r", "content": "Half an ans"}, finish_reason)
    )
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]


def test_cut_off_tool_calls_are_incomplete_and_earlier_items_complete() -> None:
    calls = [tool_call("call_a", "f", '{"a":'), tool_call("call_b", "g", "")]
    body = completion({"content": "Calling.", "tool_calls": calls}, "length")
    statuses = [item["status"] for item in translate(body)["output"]]
    assert statuses == ["completed", "incomplete", "incomplete"]


def test_only_item_of_a_cut_off_reasoning_is_incomplete() -> None:
    response = translate(completion({"reasoning_content": "Still thinking"}, "length"))
    assert [item["status"] for item in response["output"]] == ["incomplete"]


def test_usage_details_always_present() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    assert translate(completion({"content": "x"}, usage=usage))["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 8},
        "output_tokens": 50,
        "output_tokens_details": {"reasoning_tokens": 20},
        "total_tokens": 150,
    }


def test_usage_variants_of_other_backends() -> None:
    deepseek = {"prompt_tokens": 5, "completion_tokens": 2, "prompt_cache_hit_tokens": 3}
    assert usage_to_responses(deepseek) == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }
    nulls = {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "total_tokens": 2,
        "prompt_tokens_details": None,
    }
    assert usage_to_responses(nulls)["input_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 0,
    }


def test_missing_usage_is_null() -> None:
    body = completion({"content": "x"})
    del body["usage"]
    assert translate(body)["usage"] is None


def test_error_body_and_empty_choices_fail() -> None:
    failed = translate({"error": {"message": "model overloaded", "type": "server_error"}})
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "model overloaded"}
    assert failed["output"] == []
    limited = translate({"error": {"message": "slow down", "code": "rate_limit_exceeded"}})
    assert limited["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    empty = translate(completion({"content": "x"}, choices=[]))
    assert empty["error"] == {
        "code": "server_error",
        "message": "The upstream returned no choices.",
    }


def test_content_given_as_text_parts() -> None:
    body = completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    assert translate(body)["output"] == [message([text_part("ab")])]


def test_empty_answer_has_no_message_item() -> None:
    assert translate(completion({"content": ""}))["output"] == []


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    assert_valid_chat_completion(case["completion"])
    ctx = context_from_fixture(case.get("context", {}))
    response = completion_to_responses(case["completion"], ctx, now=case["now"])
    assert response == case["expected"]
    assert_valid_response(response)


def random_cuts(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(12, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("  <think>\n a </think> b </think>\n\nThe answer.", "a", "b </think>\n\nThe answer."),
        ("<think>\n a </thin> b \n</think>\n\nThe answer.", "a </thin> b", "The answer."),
        ("<think>unclosed to the end \n", "unclosed to the end", ""),
        ("\n\nplain <think>x</think>", "", "\n\nplain <think>x</think>"),
        ("<thinking>not a tag", "", "<thinking>not a tag"),
        ("<think></think>only answer", "", "only answer"),
    ],
)
def test_think_splitter_is_independent_of_chunking(text: str, reasoning: str, answer: str) -> None:
    rng = random.Random(text)
    for _ in range(200):
        splitter = ThinkSplitter()
        segments = [seg for piece in random_cuts(text, rng) for seg in splitter.feed(piece)]
        segments += splitter.flush()
        assert "".join(t for kind, t in segments if kind == "reasoning") == reasoning
        assert "".join(t for kind, t in segments if kind == "text") == answer


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (json.dumps({"input": 'a "quoted"\n\\ tab\t é 😀'}), 'a "quoted"\n\\ tab\t é 😀'),
        (json.dumps({"input": "x😀y"}, ensure_ascii=True), "x😀y"),
        ('{ "patch" : "a\\nb", "other": 1}', "a\nb"),
        ('{"input": "lone \\ud83d high"}', "lone \ufffd high"),
        ("*** Begin Patch\nraw", "*** Begin Patch\nraw"),
        ('{"input": 5}', '{"input": 5}'),
        ('{"input": "cut off', "cut off"),
        ('{"inp', ""),
        ("", ""),
    ],
)
def test_custom_tool_input_decodes_the_same_however_it_streams(
    arguments: str, expected: str
) -> None:
    assert custom_arguments_to_responses(arguments) == expected
    rng = random.Random(arguments)
    for _ in range(200):
        decoder = CustomInputDecoder()
        pieces = random_cuts(arguments, rng) if len(arguments) > 1 else [arguments]
        assert "".join(decoder.feed(piece) for piece in pieces) == expected
        assert decoder.result() == expected


@pytest.mark.parametrize(
    "breakage",
    [
        lambda r: r.pop("usage"),
        lambda r: r.pop("completed_at"),
        lambda r: r.update(status=None),
        lambda r: r.update(typo_key=1),
        lambda r: r["output"][0].pop("status"),
        lambda r: r["output"][0]["content"][0].pop("annotations"),
        lambda r: r["usage"]["input_tokens_details"].pop("cached_tokens"),
        lambda r: r["usage"]["input_tokens_details"].pop("cache_write_tokens"),
        lambda r: r["usage"]["output_tokens_details"].pop("reasoning_tokens"),
        lambda r: r.update(error={"code": None, "message": "x"}),
    ],
)
def test_validator_rejects_broken_responses(breakage: Any) -> None:
    response = translate(completion({"content": "x"}))
    breakage(response)
    with pytest.raises((AssertionError, ValueError)):
        assert_valid_response(response)


ODD_VALUES: list[Any] = [None, 0, "", "x", [], {}, [None], ["x"], [{}], {"x": 1}, True]


def test_malformed_completions_still_give_valid_responses() -> None:
    rng = random.Random(11)
    shapes = [
        lambda v: {"choices": v},
        lambda v: {"choices": [v]},
        lambda v: {"choices": [{"index": 0, "message": v, "finish_reason": "stop"}]},
        lambda v: {"choices": [{"message": {"content": v, "refusal": v}, "finish_reason": v}]},
        lambda v: {"choices": [{"message": {"reasoning_content": v, "tool_calls": v}}]},
        lambda v: {"choices": [{"message": {"tool_calls": [{"id": v, "function": v}]}}]},
        lambda v: {"usage": v, "model": v, "error": v or None},
    ]
    for _ in range(300):
        body = rng.choice(shapes)(rng.choice(ODD_VALUES))
        assert_valid_response(completion_to_responses(body, make_context(), now=NOW))
