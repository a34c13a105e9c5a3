"""Chat chunks -> Responses events: exact sequences, every event validated, golden fixtures."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from diglot.translators.context import ResponseContext, RestoredTool
from diglot.translators.responses import completion_to_responses
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream
from diglot.translators.stream.lifecycle import StreamClosed, StreamError, StreamPhase
from tests.response_context import context_from_fixture, make_context
from tests.validate import assert_valid_chat_chunk, assert_valid_response, assert_valid_stream

NOW = 1_700_000_009
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "streams"


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    *,
    usage: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_001,
        "model": "upstream-model",
        "choices": [choice],
    }
    if usage is not None:
        body["usage"] = usage
    assert_valid_chat_chunk(body)
    return body


def usage_chunk(prompt: int = 10, completion: int = 5) -> dict[str, Any]:
    body = chunk(
        usage={
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    )
    body["choices"] = []
    return body


def call(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    if name is not None:
        fragment["function"]["name"] = name
    return fragment


def run(chunks: list[dict[str, Any]], ctx: ResponseContext | None = None) -> list[dict[str, Any]]:
    """Feeds the chunks, finishes, and validates every event and the stream's grammar."""
    stream = ChatToResponsesStream(ctx or make_context(), clock=lambda: NOW)
    events = stream.start()
    for body in chunks:
        events += stream.feed(body)
    events += stream.finish()
    assert_valid_response(assert_valid_stream(events))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def terminal(events: list[dict[str, Any]]) -> dict[str, Any]:
    response: dict[str, Any] = events[-1]["response"]
    return response


MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
TEXT_CLOSE = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
START = ["response.created", "response.in_progress"]


def test_text_stream_exact_events() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hi"}),
            chunk(finish="stop"),
        ]
    )
    part = {"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}
    done_item = {
        "id": "msg_0",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
        "phase": "final_answer",
    }
    where = {"item_id": "msg_0", "output_index": 0, "content_index": 0}
    assert events[2:-1] == [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "id": "msg_0",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
            "sequence_number": 2,
        },
        {
            "type": "response.content_part.added",
            **where,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            "sequence_number": 3,
        },
        {
            "type": "response.output_text.delta",
            **where,
            "delta": "Hi",
            "logprobs": [],
            "sequence_number": 4,
        },
        {
            "type": "response.output_text.done",
            **where,
            "text": "Hi",
            "logprobs": [],
            "sequence_number": 5,
        },
        {"type": "response.content_part.done", **where, "part": part, "sequence_number": 6},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": done_item,
            "sequence_number": 7,
        },
    ]
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["sequence_number"] == 8
    response = terminal(events)
    assert response["status"] == "completed"
    assert response["completed_at"] == NOW
    assert response["output"] == [done_item]
    assert response["model"] == "upstream-model"


def test_start_events_carry_the_empty_in_progress_response() -> None:
    events = ChatToResponsesStream(make_context()).start()
    assert types(events) == START
    assert [event["sequence_number"] for event in events] == [0, 1]
    for event in events:
        response = event["response"]
        assert response["status"] == "in_progress"
        assert response["output"] == []
        assert response["usage"] is None
        assert response["completed_at"] is None
        assert response["model"] == "client-model"


def test_feed_without_start_still_opens_the_stream() -> None:
    stream = ChatToResponsesStream(make_context())
    events = (
        stream.feed(chunk({"content": "x"})) + stream.feed(chunk(finish="stop")) + stream.finish()
    )
    assert types(events)[:2] == START
    assert_valid_stream(events)


REASONING_THEN_TEXT = [
    chunk({"role": "assistant", "reasoning_content": "Let me"}),
    chunk({"reasoning_content": " think."}),
    chunk({"content": "Done."}),
    chunk(finish="stop"),
]


def test_reasoning_streams_as_a_summary_by_default() -> None:
    """What Codex, the AI SDK and LangChain show; the item holds the text once, as a summary."""
    events = run(REASONING_THEN_TEXT)
    where = {"item_id": "rs_0", "output_index": 0, "summary_index": 0}
    part = {"type": "summary_text", "text": "Let me think."}
    done_item = {"id": "rs_0", "type": "reasoning", "status": "completed", "summary": [part]}
    assert events[2:9] == [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": "rs_0", "type": "reasoning", "status": "in_progress", "summary": []},
            "sequence_number": 2,
        },
        {
            "type": "response.reasoning_summary_part.added",
            **where,
            "part": {"type": "summary_text", "text": ""},
            "sequence_number": 3,
        },
        {
            "type": "response.reasoning_summary_text.delta",
            **where,
            "delta": "Let me",
            "sequence_number": 4,
        },
        {
            "type": "response.reasoning_summary_text.delta",
            **where,
            "delta": " think.",
            "sequence_number": 5,
        },
        {
            "type": "response.reasoning_summary_text.done",
            **where,
            "text": "Let me think.",
            "sequence_number": 6,
        },
        {
            "type": "response.reasoning_summary_part.done",
            **where,
            "part": part,
            "sequence_number": 7,
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": done_item,
            "sequence_number": 8,
        },
    ]
    assert types(events)[9:] == [
        *MESSAGE_OPEN,
        "response.output_text.delta",
        *TEXT_CLOSE,
        "response.completed",
    ]
    assert terminal(events)["output"][0] == done_item
    assert [item["id"] for item in terminal(events)["output"]] == ["rs_0", "msg_0"]


def test_text_mode_streams_raw_reasoning_text() -> None:
    """`--reasoning-events text`: for clients that read raw reasoning, and only there."""
    events = run(REASONING_THEN_TEXT, make_context(reasoning_events="text"))
    where = {"item_id": "rs_0", "output_index": 0, "content_index": 0}
    part = {"type": "reasoning_text", "text": "Let me think."}
    done_item = {
        "id": "rs_0",
        "type": "reasoning",
        "status": "completed",
        "summary": [],
        "content": [part],
    }
    assert events[2:9] == [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "id": "rs_0",
                "type": "reasoning",
                "status": "in_progress",
                "summary": [],
                "content": [],
            },
            "sequence_number": 2,
        },
        {
            "type": "response.content_part.added",
            **where,
            "part": {"type": "reasoning_text", "text": ""},
            "sequence_number": 3,
        },
        {"type": "response.reasoning_text.delta", **where, "delta": "Let me", "sequence_number": 4},
        {
            "type": "response.reasoning_text.delta",
            **where,
            "delta": " think.",
            "sequence_number": 5,
        },
        {
            "type": "response.reasoning_text.done",
            **where,
            "text": "Let me think.",
            "sequence_number": 6,
        },
        {"type": "response.content_part.done", **where, "part": part, "sequence_number": 7},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": done_item,
            "sequence_number": 8,
        },
    ]
    assert terminal(events)["output"][0] == done_item


def test_think_block_split_across_chunks() -> None:
    pieces = ["<", "think", ">\nStep", " one", "</thi", "nk>", "\n\nAns", "wer"]
    events = run([chunk({"content": piece}) for piece in pieces] + [chunk(finish="stop")])
    assert [e["delta"] for e in of_type(events, "response.reasoning_summary_text.delta")] == [
        "Step",
        " one",
    ]
    assert [e["delta"] for e in of_type(events, "response.output_text.delta")] == ["Ans", "wer"]
    assert [item["type"] for item in terminal(events)["output"]] == ["reasoning", "message"]


def test_think_tags_off_passes_text_through() -> None:
    events = run(
        [chunk({"content": "<think>x</think>y"}), chunk(finish="stop")],
        make_context(think_tags=False),
    )
    assert [e["delta"] for e in of_type(events, "response.output_text.delta")] == [
        "<think>x</think>y"
    ]


def test_unclosed_think_block_at_the_end_is_reasoning() -> None:
    events = run([chunk({"content": "<think>still going </th"}), chunk(finish="length")])
    output = terminal(events)["output"]
    assert output == [
        {
            "id": "rs_0",
            "type": "reasoning",
            "status": "incomplete",
            "summary": [{"type": "summary_text", "text": "still going </th"}],
        }
    ]


def test_refusal_events() -> None:
    events = run([chunk({"refusal": "No"}), chunk({"refusal": "pe."}), chunk(finish="stop")])
    assert types(events) == [
        *START,
        *MESSAGE_OPEN,
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert of_type(events, "response.refusal.done")[0]["refusal"] == "Nope."


def test_text_then_refusal_are_two_parts_of_one_message() -> None:
    events = run([chunk({"content": "Well"}), chunk({"refusal": "no"}), chunk(finish="stop")])
    parts = terminal(events)["output"][0]["content"]
    assert [part["type"] for part in parts] == ["output_text", "refusal"]
    assert [e["content_index"] for e in of_type(events, "response.content_part.added")] == [0, 1]


def test_single_tool_call_exact_events() -> None:
    events = run(
        [
            chunk({"role": "assistant", "tool_calls": [call(0, "", "call_1", "get_weather")]}),
            chunk({"tool_calls": [call(0, '{"city":')]}),
            chunk({"tool_calls": [call(0, '"Paris"}')]}),
            chunk(finish="tool_calls"),
        ]
    )
    item = {
        "id": "fc_0",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "get_weather",
    }
    final = {**item, "status": "completed", "arguments": '{"city":"Paris"}'}
    where = {"item_id": "fc_0", "output_index": 0}
    assert events[2:-1] == [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "arguments": ""},
            "sequence_number": 2,
        },
        {
            "type": "response.function_call_arguments.delta",
            **where,
            "delta": '{"city":',
            "sequence_number": 3,
        },
        {
            "type": "response.function_call_arguments.delta",
            **where,
            "delta": '"Paris"}',
            "sequence_number": 4,
        },
        {
            "type": "response.function_call_arguments.done",
            **where,
            "arguments": '{"city":"Paris"}',
            "sequence_number": 5,
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": final,
            "sequence_number": 6,
        },
    ]
    assert terminal(events)["output"] == [final]


def test_text_before_tool_calls_is_closed_first() -> None:
    events = run(
        [
            chunk({"content": "Let me check."}),
            chunk({"tool_calls": [call(0, "{}", "call_1", "now")]}),
            chunk(finish="tool_calls"),
        ]
    )
    assert types(events) == [
        *START,
        *MESSAGE_OPEN,
        "response.output_text.delta",
        *TEXT_CLOSE,
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_parallel_and_interleaved_calls_are_routed_by_index() -> None:
    events = run(
        [
            chunk({"tool_calls": [call(0, '{"q":', "call_a", "search")]}),
            chunk({"tool_calls": [call(1, '{"q":', "call_b", "search")]}),
            chunk({"tool_calls": [call(1, '"b"}'), call(0, '"a"}')]}),
            chunk({"tool_calls": [call(2, "{}", "call_c", "now")]}),
            chunk(finish="tool_calls"),
        ]
    )
    output = terminal(events)["output"]
    assert [(i["id"], i["call_id"], i["arguments"]) for i in output] == [
        ("fc_0", "call_a", '{"q":"a"}'),
        ("fc_1", "call_b", '{"q":"b"}'),
        ("fc_2", "call_c", "{}"),
    ]
    deltas = [
        (e["output_index"], e["delta"])
        for e in of_type(events, "response.function_call_arguments.delta")
    ]
    assert deltas == [(0, '{"q":'), (1, '{"q":'), (1, '"b"}'), (0, '"a"}'), (2, "{}")]
    done = [e["output_index"] for e in of_type(events, "response.output_item.done")]
    assert done == [0, 1, 2]


def test_index_less_tool_calls_are_told_apart_by_id() -> None:
    first = {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    second = {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}}
    stream = ChatToResponsesStream(make_context(), clock=lambda: NOW)
    events = stream.start()
    for body in (
        {"choices": [{"index": 0, "delta": {"tool_calls": [first, second]}}]},
        chunk(finish="tool_calls"),
    ):
        events += stream.feed(body)
    events += stream.finish()
    output = assert_valid_stream(events)["output"]
    assert [(i["name"], i["arguments"]) for i in output] == [("f", "{}"), ("g", '{"x":1}')]


def test_calls_sharing_one_index_are_told_apart_by_id() -> None:
    events = run(
        [
            chunk({"tool_calls": [call(0, '{"path":', "call_a", "write")]}),
            chunk({"tool_calls": [call(0, '"a.py"}')]}),
            chunk({"tool_calls": [call(0, '{"path":', "call_b", "write")]}),
            chunk({"tool_calls": [call(0, '"b.py"}')]}),
            chunk(finish="tool_calls"),
        ]
    )
    output = terminal(events)["output"]
    assert [(i["call_id"], i["arguments"]) for i in output] == [
        ("call_a", '{"path":"a.py"}'),
        ("call_b", '{"path":"b.py"}'),
    ]


def test_repeated_id_on_every_fragment_stays_one_call() -> None:
    events = run(
        [
            chunk({"tool_calls": [call(0, '{"a":', "call_a", "f")]}),
            chunk({"tool_calls": [call(0, "1}", "call_a")]}),
            chunk(finish="tool_calls"),
        ]
    )
    assert [i["arguments"] for i in terminal(events)["output"]] == ['{"a":1}']


def test_id_arriving_after_the_first_fragment_stays_one_call() -> None:
    events = run(
        [
            chunk({"tool_calls": [call(0, '{"a":', name="f")]}),
            chunk({"tool_calls": [call(0, "1}", "call_late")]}),
            chunk(finish="tool_calls"),
        ]
    )
    assert [(i["call_id"], i["arguments"]) for i in terminal(events)["output"]] == [
        ("call_0", '{"a":1}')
    ]


def test_missing_call_id_is_minted() -> None:
    events = run([chunk({"tool_calls": [call(0, "{}", name="now")]}), chunk(finish="tool_calls")])
    assert terminal(events)["output"][0]["call_id"] == "call_0"


def test_custom_tool_input_is_decoded_while_streaming() -> None:
    ctx = make_context(tools={"apply_patch": RestoredTool("custom", "apply_patch")})
    fragments = ['{"input":', ' "line1\\', 'nline \\"2\\"\\u00', "e9", '"}']
    events = run(
        [chunk({"tool_calls": [call(0, fragments[0], "call_p", "apply_patch")]})]
        + [chunk({"tool_calls": [call(0, fragment)]}) for fragment in fragments[1:]]
        + [chunk(finish="tool_calls")],
        ctx,
    )
    deltas = [e["delta"] for e in of_type(events, "response.custom_tool_call_input.delta")]
    assert deltas == ["line1", '\nline "2"', "é"]
    assert of_type(events, "response.custom_tool_call_input.done")[0]["input"] == 'line1\nline "2"é'
    assert of_type(events, "response.output_item.added")[0]["item"] == {
        "id": "ctc_0",
        "type": "custom_tool_call",
        "status": "in_progress",
        "call_id": "call_p",
        "name": "apply_patch",
        "input": "",
    }
    assert not of_type(events, "response.function_call_arguments.delta")


def test_namespaced_tool_is_restored() -> None:
    ctx = make_context(tools={"mcp__fs__read": RestoredTool("function", "read", "mcp__fs")})
    events = run(
        [
            chunk({"tool_calls": [call(0, "{}", "call_r", "mcp__fs__read")]}),
            chunk(finish="tool_calls"),
        ],
        ctx,
    )
    added = of_type(events, "response.output_item.added")[0]["item"]
    assert (added["name"], added["namespace"]) == ("read", "mcp__fs")
    assert terminal(events)["output"][0]["namespace"] == "mcp__fs"


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_cut_off_streams_end_incomplete(finish_reason: str, reason: str) -> None:
    events = run(
        [
            chunk({"reasoning_content": "r"}),
            chunk({"content": "Half"}),
            chunk(finish=finish_reason),
            usage_chunk(),
        ]
    )
    assert events[-1]["type"] == "response.incomplete"
    response = terminal(events)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]
    assert of_type(events, "response.output_item.done")[-1]["item"]["status"] == "incomplete"


def test_usage_after_finish_reason_reaches_the_terminal_event() -> None:
    stream = ChatToResponsesStream(make_context(), clock=lambda: NOW)
    events = (
        stream.start() + stream.feed(chunk({"content": "x"})) + stream.feed(chunk(finish="stop"))
    )
    assert events[-1]["type"] == "response.output_item.done"
    events += stream.feed(usage_chunk(12, 3)) + stream.finish()
    assert terminal(events)["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    assert_valid_stream(events)


def test_missing_usage_is_null() -> None:
    assert terminal(run([chunk({"content": "x"}), chunk(finish="stop")]))["usage"] is None


def test_logprobs_ride_on_text_deltas_when_requested() -> None:
    entry = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    body = chunk({"content": "Hi"}, logprobs={"content": [entry], "refusal": None})
    events = run([body, chunk(finish="stop")], make_context(include_logprobs=True))
    assert of_type(events, "response.output_text.delta")[0]["logprobs"] == [entry]
    assert of_type(events, "response.output_text.done")[0]["logprobs"] == [entry]
    assert terminal(events)["output"][0]["content"][0]["logprobs"] == [entry]


def test_upstream_error_chunk_fails_the_response() -> None:
    stream = ChatToResponsesStream(make_context(), clock=lambda: NOW)
    events = stream.start() + stream.feed(chunk({"content": "Pa"}))
    events += stream.feed(
        {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    )
    for late in (lambda: stream.feed(chunk({"content": "more"})), stream.finish, stream.start):
        with pytest.raises(StreamClosed):
            late()
    assert (stream.phase, stream.error) == (
        StreamPhase.FAILED,
        StreamError("overloaded", "server_error"),
    )
    assert stream.response is events[-1]["response"]
    assert events[-1]["type"] == "response.failed"
    response = assert_valid_stream(events)
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "overloaded"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["completed_at"] is None


def test_bare_error_object_chunk_fails_the_response() -> None:
    stream = ChatToResponsesStream(make_context())
    events = stream.start() + stream.feed({"object": "error", "message": "bad", "code": 400})
    assert terminal(events)["error"] == {"code": "server_error", "message": "bad"}
    assert_valid_stream(events)


def test_rate_limit_error_chunk_keeps_its_code() -> None:
    stream = ChatToResponsesStream(make_context())
    events = stream.start() + stream.feed(
        {"error": {"message": "slow down", "type": "rate_limit_error"}}
    )
    assert terminal(events)["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert_valid_stream(events)


def test_fail_ends_the_stream_with_response_failed() -> None:
    stream = ChatToResponsesStream(make_context())
    events = stream.start() + stream.feed(chunk({"tool_calls": [call(0, '{"a"', "call_1", "f")]}))
    failed = stream.fail("upstream timed out", "timeout")
    assert types(failed) == ["response.failed"]
    assert failed[0]["response"]["error"] == {
        "code": "server_error",
        "message": "upstream timed out",
    }
    assert failed[0]["response"]["output"][0]["arguments"] == '{"a"'
    assert stream.error == StreamError("upstream timed out", "server_error")
    for late in (lambda: stream.fail("again"), stream.finish, lambda: stream.feed(chunk())):
        with pytest.raises(StreamClosed):
            late()
    assert_valid_stream(events + failed)


def test_fail_before_any_chunk_still_opens_the_stream() -> None:
    events = ChatToResponsesStream(make_context()).fail("connect failed", "rate_limit_exceeded")
    assert types(events) == [*START, "response.failed"]
    assert terminal(events)["error"]["code"] == "rate_limit_exceeded"
    assert_valid_stream(events)


def test_stream_ending_without_finish_reason_fails() -> None:
    stream = ChatToResponsesStream(make_context())
    events = stream.start() + stream.feed(chunk({"content": "cut"})) + stream.finish()
    assert events[-1]["type"] == "response.failed"
    assert_valid_stream(events)


def test_the_stream_stays_open_until_finish_for_a_late_usage_chunk() -> None:
    stream = ChatToResponsesStream(make_context(), clock=lambda: NOW)
    events = stream.start() + stream.feed(chunk({"content": "a"}))
    events += stream.feed(chunk(finish="length"))
    assert (stream.phase, stream.response, stream.usage) == (StreamPhase.OPEN, None, None)
    events += stream.feed(usage_chunk(12, 3))
    assert stream.phase is StreamPhase.OPEN
    events += stream.finish()
    assert events[-1]["type"] == "response.incomplete"
    assert stream.phase is StreamPhase.FINISHED
    assert stream.response is events[-1]["response"]
    assert stream.usage is events[-1]["response"]["usage"]
    assert stream.usage is not None and stream.usage["input_tokens"] == 12
    assert stream.error is None


def test_an_upstream_that_ends_before_the_finish_reason_fails_the_stream() -> None:
    stream = ChatToResponsesStream(make_context())
    stream.start()
    stream.feed(chunk({"content": "cut"}))
    assert stream.finish()[-1]["type"] == "response.failed"
    assert stream.phase is StreamPhase.FAILED
    assert stream.error == StreamError(
        "The upstream stream ended before the answer finished.", "server_error"
    )


def test_chunks_after_finish_reason_are_ignored() -> None:
    events = run([chunk({"content": "a"}), chunk(finish="stop"), chunk({"content": "b"})])
    assert terminal(events)["output"][0]["content"][0]["text"] == "a"


def test_content_as_text_parts_and_empty_deltas() -> None:
    """Some backends send content as a list of parts, which the chat chunk type does not allow."""
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]
    odd = [{"choices": [{"index": 0, "delta": {"content": c}}]} for c in (parts, [{"type": "x"}])]
    events = run([chunk({"content": ""}), *odd, chunk(finish="stop")])
    assert [e["delta"] for e in of_type(events, "response.output_text.delta")] == ["a"]


def test_other_choices_are_ignored() -> None:
    extra = chunk({"content": "other"})
    extra["choices"][0]["index"] = 1
    events = run([chunk({"content": "mine"}), extra, chunk(finish="stop")])
    assert terminal(events)["output"][0]["content"][0]["text"] == "mine"


STREAM_VS_COMPLETION = [
    ({"content": "Plain."}, "stop", {}),
    ({"reasoning_content": "R.", "content": "<think>T.</think>A."}, "stop", {}),
    ({"content": "x", "refusal": "no"}, "stop", {}),
    ({"reasoning_content": "R", "content": "Half"}, "length", {}),
    ({"reasoning_content": "R"}, "length", {}),
    (
        {
            "content": "Calling.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": '{"input":"p"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "ns__f", "arguments": '{"a":1}'},
                },
            ],
        },
        "tool_calls",
        {
            "tools": {
                "apply_patch": RestoredTool("custom", "apply_patch"),
                "ns__f": RestoredTool("function", "f", "ns"),
            }
        },
    ),
]


@pytest.mark.parametrize(("message", "finish_reason", "context"), STREAM_VS_COMPLETION)
def test_terminal_response_equals_the_non_streamed_one(
    message: dict[str, Any], finish_reason: str, context: dict[str, Any]
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }
    expected = completion_to_responses(completion, make_context(**context), now=NOW)
    chunks = [chunk({"role": "assistant"})]
    for key in ("reasoning_content", "content", "refusal"):
        if key in message:
            chunks.append(chunk({key: message[key]}))
    for index, tool_call in enumerate(message.get("tool_calls", [])):
        chunks.append(chunk({"tool_calls": [{"index": index, **tool_call}]}))
    chunks += [chunk(finish=finish_reason), usage_chunk(3, 4)]
    assert terminal(run(chunks, make_context(**context))) == expected


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    stream = ChatToResponsesStream(
        context_from_fixture(case.get("context", {})), clock=lambda: case["now"]
    )
    events = stream.start()
    for body in case["chunks"]:
        if "error" not in body:
            assert_valid_chat_chunk(body)
        events += stream.feed(body)
    if "fail" in case:
        events += stream.fail(**case["fail"])
    elif stream.phase is StreamPhase.OPEN:  # an error chunk may have ended it
        events += stream.finish()
    assert events == case["events"]
    assert_valid_response(assert_valid_stream(events))


ODD_VALUES: list[Any] = [None, 0, 7, "", "x", [], {}, [None], ["x"], [{}], {"x": 1}, True]


def test_malformed_chunks_never_break_the_grammar() -> None:
    rng = random.Random(7)
    shapes = [
        lambda v: {"choices": v},
        lambda v: {"choices": [v]},
        lambda v: {"choices": [{"index": 0, "delta": v}]},
        lambda v: {"choices": [{"index": 0, "delta": {"content": v}}]},
        lambda v: {"choices": [{"index": 0, "delta": {"reasoning_content": v, "refusal": v}}]},
        lambda v: {"choices": [{"index": 0, "delta": {"tool_calls": v}}]},
        lambda v: {
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": v}]}}]
        },
        lambda v: {"choices": [{"index": 0, "delta": {}, "finish_reason": v}]},
        lambda v: {"usage": v, "model": v},
    ]
    for _ in range(300):
        stream = ChatToResponsesStream(make_context())
        events = stream.start()
        for _ in range(rng.randint(1, 6)):
            events += stream.feed(rng.choice(shapes)(rng.choice(ODD_VALUES)))
        events += stream.finish()
        assert_valid_stream(events)
