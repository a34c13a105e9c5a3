"""Responses events -> chat chunks: exact chunk sequences, every chunk validated, golden fixtures.

Upstream events come from the other direction's state machine (chat chunks -> Responses
events, itself validated) or are written out here, each validated as a Responses event.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from diglot.translators.context import ChatContext, ResponseContext, RestoredTool
from diglot.translators.responses import response_to_chat
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream
from diglot.translators.stream.lifecycle import StreamClosed, StreamError, StreamPhase
from diglot.translators.stream.responses_to_chat import ResponsesToChatStream
from tests.response_context import make_context
from tests.test_responses_responses_to_chat import chat_context, function_call, mutate
from tests.validate import (
    assert_valid_chat_chunk,
    assert_valid_chat_stream,
    assert_valid_stream,
    assert_valid_stream_event,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "streams_chat"
ENVELOPE = {
    "id": "chatcmpl-test",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "client-model",
    "service_tier": "default",
    "system_fingerprint": None,
}
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
CHAT_USAGE = {
    **USAGE,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
PATCH_TOOL = {"apply_patch": RestoredTool("custom", "apply_patch")}


def chat_chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An upstream chat chunk, for the other direction to turn into Responses events."""
    body: dict[str, Any] = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
        body["choices"] = []
    return body


def call(index: int, arguments: str, call_id: str | None = None, name: str = "") -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return fragment


def upstream(
    chunks: list[dict[str, Any]], ctx: ResponseContext | None = None
) -> list[dict[str, Any]]:
    """The Responses events a Responses-only upstream sends for these chat chunks."""
    stream = ChatToResponsesStream(ctx or make_context(), clock=lambda: 2)
    events = stream.start()
    for body in chunks:
        events += stream.feed(body)
    events += stream.finish()
    assert_valid_stream(events)
    return events


def translate(
    events: list[dict[str, Any]], ctx: ChatContext | None = None, index: int = 0
) -> list[dict[str, Any]]:
    """Feeds every event, then finish() if no terminal event came; validates all it sees."""
    machine = ResponsesToChatStream(ctx or chat_context(), index)
    chunks: list[dict[str, Any]] = []
    for event in events:
        assert_valid_stream_event(event)
        chunks += machine.feed(event)
    chunks += finish(machine)
    body = [chunk for chunk in chunks if "error" not in chunk]
    if index:
        for chunk in body:
            assert_valid_chat_chunk(chunk)
    elif body:
        assert_valid_chat_stream(body)
    return chunks


def finish(machine: ResponsesToChatStream) -> list[dict[str, Any]]:
    """What the upstream's end adds: nothing once the machine's stream is over."""
    return machine.finish() if machine.phase is StreamPhase.OPEN else []


def chunk(
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    logprobs: dict[str, Any] | None = None,
    index: int = 0,
    envelope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        **(envelope or ENVELOPE),
        "choices": [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        ],
    }


ROLE = chunk({"role": "assistant", "content": ""})
STOP = chunk({}, "stop")


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c.get("choices")]


def test_text_stream_exact_chunks() -> None:
    events = upstream(
        [
            chat_chunk({"role": "assistant", "content": ""}),
            chat_chunk({"content": "Hel"}),
            chat_chunk({"content": "lo"}),
            chat_chunk(finish="stop"),
        ]
    )
    assert translate(events) == [
        ROLE,
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        STOP,
    ]


def test_choice_index_for_fan_out() -> None:
    events = upstream([chat_chunk({"content": "x"}), chat_chunk(finish="stop")])
    chunks = translate(events, index=2)
    assert [c["choices"][0]["index"] for c in chunks] == [2, 2, 2]


def test_refusal_stream() -> None:
    events = upstream(
        [
            chat_chunk({"refusal": "I can't"}),
            chat_chunk({"refusal": " help."}),
            chat_chunk(finish="stop"),
        ]
    )
    assert translate(events) == [
        ROLE,
        chunk({"refusal": "I can't"}),
        chunk({"refusal": " help."}),
        STOP,
    ]


REASONING_THEN_TEXT = [
    chat_chunk({"reasoning_content": "Let me"}),
    chat_chunk({"reasoning_content": " think."}),
    chat_chunk({"content": "42"}),
    chat_chunk(finish="stop"),
]


@pytest.mark.parametrize("mode", ["text", "summary"])
def test_reasoning_text_and_summary_become_reasoning_content(mode: str) -> None:
    events = upstream(REASONING_THEN_TEXT, make_context(reasoning_events=mode))
    assert translate(events) == [
        ROLE,
        chunk({"reasoning_content": "Let me"}),
        chunk({"reasoning_content": " think."}),
        chunk({"content": "42"}),
        STOP,
    ]


def test_reasoning_is_left_out_when_switched_off() -> None:
    events = upstream(REASONING_THEN_TEXT)
    ctx = chat_context(chat_reasoning_content=False)
    assert translate(events, ctx) == [ROLE, chunk({"content": "42"}), STOP]


def test_single_tool_call_after_text() -> None:
    events = upstream(
        [
            chat_chunk({"content": "Checking."}),
            chat_chunk({"tool_calls": [call(0, "", "call_1", "get_weather")]}),
            chat_chunk({"tool_calls": [call(0, '{"city":')]}),
            chat_chunk({"tool_calls": [call(0, '"Paris"}')]}),
            chat_chunk(finish="tool_calls"),
        ]
    )
    opening = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert translate(events) == [
        ROLE,
        chunk({"content": "Checking."}),
        chunk({"tool_calls": [opening]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
    ]


def test_parallel_interleaved_calls_keep_their_own_indexes() -> None:
    events = upstream(
        [
            chat_chunk({"tool_calls": [call(0, '{"a":', "call_a", "f")]}),
            chat_chunk({"tool_calls": [call(1, '{"b":', "call_b", "g")]}),
            chat_chunk({"tool_calls": [call(0, "1}")]}),
            chat_chunk({"tool_calls": [call(1, "2}")]}),
            chat_chunk(finish="tool_calls"),
        ]
    )

    def opening(index: int, call_id: str, name: str) -> dict[str, Any]:
        function = {"name": name, "arguments": ""}
        return {"index": index, "id": call_id, "type": "function", "function": function}

    def args(index: int, text: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "function": {"arguments": text}}]}

    assert deltas(translate(events)) == [
        {"role": "assistant", "content": ""},
        {"tool_calls": [opening(0, "call_a", "f")]},
        args(0, '{"a":'),
        {"tool_calls": [opening(1, "call_b", "g")]},
        args(1, '{"b":'),
        args(0, "1}"),
        args(1, "2}"),
        {},
    ]


def test_custom_tool_call_streams_its_input() -> None:
    events = upstream(
        [
            chat_chunk({"tool_calls": [call(0, '{"input":"*** Begin', "call_p", "apply_patch")]}),
            chat_chunk({"tool_calls": [call(0, ' Patch\\n"}')]}),
            chat_chunk(finish="tool_calls"),
        ],
        make_context(tools=PATCH_TOOL),
    )
    opening = {
        "index": 0,
        "id": "call_p",
        "type": "custom",
        "custom": {"name": "apply_patch", "input": ""},
    }
    assert deltas(translate(events))[1:] == [
        {"tool_calls": [opening]},
        {"tool_calls": [{"index": 0, "custom": {"input": "*** Begin"}}]},
        {"tool_calls": [{"index": 0, "custom": {"input": " Patch\n"}}]},
        {},
    ]


def event(kind: str, sequence: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": sequence, **fields}


def lifecycle(kind: str, sequence: int, status: str, **fields: Any) -> dict[str, Any]:
    """A lifecycle event carrying the response, taken from a real stream of the other direction."""
    response = {**upstream([chat_chunk(finish="stop")])[-1]["response"], "status": status}
    response["model"] = "client-model"
    if status != "completed":
        response["completed_at"] = None
    response.update(fields)
    return event(kind, sequence, response=response)


def fc_item(arguments: str, status: str = "completed", call_id: str = "call_9") -> dict[str, Any]:
    return function_call(call_id, "lookup", arguments, status=status)


def test_arguments_only_in_done_events_are_sent_once() -> None:
    where = {"item_id": "fc_call_9", "output_index": 0}
    events = [
        lifecycle("response.created", 0, "in_progress", output=[]),
        event("response.output_item.added", 1, output_index=0, item=fc_item("", "in_progress")),
        event("response.function_call_arguments.done", 2, **where, arguments='{"q":1}'),
        event("response.output_item.done", 3, output_index=0, item=fc_item('{"q":1}')),
        lifecycle("response.completed", 4, "completed", output=[fc_item('{"q":1}')]),
    ]
    assert deltas(translate(events))[1:] == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":1}'}}]},
        {},
    ]


def test_partial_deltas_are_completed_from_the_item_and_unannounced_calls_open_late() -> None:
    where = {"item_id": "fc_call_9", "output_index": 0}
    second = fc_item("{}", call_id="call_8")
    events = [
        lifecycle("response.created", 0, "in_progress", output=[]),
        event("response.output_item.added", 1, output_index=0, item=fc_item("", "in_progress")),
        event("response.function_call_arguments.delta", 2, **where, delta='{"q"'),
        event("response.output_item.done", 3, output_index=0, item=fc_item('{"q":1}')),
        event("response.output_item.done", 4, output_index=1, item=second),
        lifecycle("response.completed", 5, "completed", output=[fc_item('{"q":1}'), second]),
    ]
    calls = [d["tool_calls"][0] for d in deltas(translate(events)) if "tool_calls" in d]
    assert calls == [
        {
            "index": 0,
            "id": "call_9",
            "type": "function",
            "function": {"name": "lookup", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"q"'}},
        {"index": 0, "function": {"arguments": ":1}"}},
        {
            "index": 1,
            "id": "call_8",
            "type": "function",
            "function": {"name": "lookup", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": "{}"}},
    ]


def test_an_answer_given_only_in_the_terminal_event_is_still_sent() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Whole.", "annotations": [], "logprobs": []}],
    }
    events = [lifecycle("response.completed", 0, "completed", output=[message])]
    assert translate(events) == [ROLE, chunk({"content": "Whole."}), STOP]


def test_text_only_in_its_done_event_and_unknown_events_ignored() -> None:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant"}
    events = [
        lifecycle("response.created", 0, "in_progress", output=[]),
        lifecycle("response.in_progress", 1, "in_progress", output=[]),
        event("response.output_item.added", 2, output_index=0, item={**item, "content": []}),
        event("response.content_part.added", 3, **where, part=part),
        event("response.output_text.delta", 4, **where, delta="Hi", logprobs=[]),
        event("response.output_text.done", 5, **where, text="Hi there", logprobs=[]),
        event("response.content_part.done", 6, **where, part={**part, "text": "Hi there"}),
    ]
    chunks = translate(events)
    assert chunks[:3] == [ROLE, chunk({"content": "Hi"}), chunk({"content": " there"})]
    assert chunks[3] == {
        "error": {
            "message": "The upstream stream ended before the response finished.",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }
    assert len(chunks) == 4


def test_reasoning_parts_and_items_are_set_apart_as_in_a_whole_answer() -> None:
    def summary(sequence: int, output_index: int, index: int, delta: str) -> dict[str, Any]:
        return event(
            "response.reasoning_summary_text.delta",
            sequence,
            item_id=f"rs_{output_index}",
            output_index=output_index,
            summary_index=index,
            delta=delta,
        )

    events = [
        summary(0, 0, 0, "One"),
        summary(1, 0, 0, "."),
        summary(2, 0, 1, "Two."),
        summary(3, 1, 0, "Three."),
    ]
    chunks = translate(events)
    assert [d.get("reasoning_content") for d in deltas(chunks)] == [
        None,
        "One",
        ".",
        "\n\nTwo.",
        "\n\nThree.",
    ]
    assert "error" in chunks[-1]


@pytest.mark.parametrize(
    ("finish_reason", "chat_finish"),
    [("length", "length"), ("content_filter", "content_filter")],
)
def test_cut_off_answers(finish_reason: str, chat_finish: str) -> None:
    events = upstream([chat_chunk({"content": "Once"}), chat_chunk(finish=finish_reason)])
    assert translate(events)[-1] == chunk({}, chat_finish)


def test_usage_chunk_when_asked_and_usage_null_on_every_chunk_before() -> None:
    events = upstream(
        [chat_chunk({"content": "Hi"}), chat_chunk(finish="stop"), chat_chunk(usage=USAGE)]
    )
    with_usage = {**ENVELOPE, "usage": None}
    assert translate(events, chat_context(include_usage=True)) == [
        chunk({"role": "assistant", "content": ""}, envelope=with_usage),
        chunk({"content": "Hi"}, envelope=with_usage),
        chunk({}, "stop", envelope=with_usage),
        {**ENVELOPE, "usage": CHAT_USAGE, "choices": []},
    ]
    assert translate(events) == [ROLE, chunk({"content": "Hi"}), STOP]


def test_logprobs_ride_on_their_text_chunk() -> None:
    entry = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    events = upstream(
        [
            {
                **chat_chunk({"content": "Hi"}),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "Hi"},
                        "finish_reason": None,
                        "logprobs": {"content": [entry], "refusal": None},
                    }
                ],
            },
            chat_chunk(finish="stop"),
        ],
        make_context(include_logprobs=True),
    )
    chunks = translate(events, chat_context(include_logprobs=True))
    assert chunks[1] == chunk({"content": "Hi"}, logprobs={"content": [entry], "refusal": None})


def test_failed_response_becomes_an_error_chunk_and_the_stream_ends() -> None:
    failed = lifecycle(
        "response.failed",
        9,
        "failed",
        error={"code": "rate_limit_exceeded", "message": "Too many requests."},
    )
    events = [*upstream([chat_chunk({"content": "Hi"})])[:-1], failed]
    machine = ResponsesToChatStream(chat_context())
    chunks = [c for e in events for c in machine.feed(e)]
    assert chunks == [
        ROLE,
        chunk({"content": "Hi"}),
        {
            "error": {
                "message": "Too many requests.",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
    ]
    assert machine.phase is StreamPhase.FAILED
    assert machine.error == StreamError("Too many requests.", "rate_limit_exceeded")
    assert machine.usage is None
    for late in (lambda: machine.feed(events[3]), machine.finish, lambda: machine.fail("late")):
        with pytest.raises(StreamClosed):
            late()


@pytest.mark.parametrize(
    "fields",
    [
        {"code": "invalid_prompt", "message": "Flagged.", "param": "input"},
        {"error": {"code": "invalid_prompt", "message": "Flagged.", "param": "input"}},
    ],
    ids=["openai-sdk-shape", "open-responses-shape"],
)
def test_error_event_becomes_an_error_chunk(fields: dict[str, Any]) -> None:
    """The SDK's `error` event carries its fields flat, the Open Responses one nests them."""
    machine = ResponsesToChatStream(chat_context())
    assert machine.feed(event("error", 3, **fields)) == [
        {
            "error": {
                "message": "Flagged.",
                "type": "invalid_request_error",
                "param": "input",
                "code": "invalid_prompt",
            }
        }
    ]
    assert (machine.phase, machine.error) == (
        StreamPhase.FAILED,
        StreamError("Flagged.", "invalid_prompt"),
    )
    with pytest.raises(StreamClosed):
        machine.finish()


def test_fail_breaks_the_stream_off() -> None:
    machine = ResponsesToChatStream(chat_context())
    assert machine.fail("The upstream connection broke.") == [
        {
            "error": {
                "message": "The upstream connection broke.",
                "type": "server_error",
                "param": None,
                "code": "server_error",
            }
        }
    ]
    assert machine.error == StreamError("The upstream connection broke.", "server_error")
    with pytest.raises(StreamClosed):
        machine.feed(lifecycle("response.created", 0, "in_progress"))


def test_an_upstream_that_ends_early_fails_the_stream() -> None:
    events = upstream([chat_chunk({"content": "x"})])[:-1]
    machine = ResponsesToChatStream(chat_context())
    for item in events:
        machine.feed(item)
    assert machine.phase is StreamPhase.OPEN
    assert machine.finish() == [
        {
            "error": {
                "message": "The upstream stream ended before the response finished.",
                "type": "server_error",
                "param": None,
                "code": "server_error",
            }
        }
    ]
    assert (machine.phase, machine.usage) == (StreamPhase.FAILED, None)
    assert machine.error == StreamError(
        "The upstream stream ended before the response finished.", "server_error"
    )


@pytest.mark.parametrize("include_usage", [True, False])
def test_the_terminal_event_finishes_the_stream_with_its_usage(include_usage: bool) -> None:
    """The usage is the upstream's, kept for the log line whether or not the client asked."""
    events = upstream(
        [chat_chunk({"content": "x"}), chat_chunk(finish="stop"), chat_chunk(usage=USAGE)]
    )
    machine = ResponsesToChatStream(chat_context(include_usage=include_usage))
    for item in events[:-1]:
        machine.feed(item)
        assert machine.phase is StreamPhase.OPEN
    machine.feed(events[-1])
    assert machine.phase is StreamPhase.FINISHED
    assert machine.usage == events[-1]["response"]["usage"]
    assert machine.usage is not None and machine.usage["input_tokens"] == 10
    assert machine.error is None


def test_nothing_follows_the_final_chunks() -> None:
    events = upstream([chat_chunk({"content": "x"}), chat_chunk(finish="stop")])
    machine = ResponsesToChatStream(chat_context())
    for item in events:
        machine.feed(item)
    for late in (lambda: machine.feed(events[-1]), machine.finish, lambda: machine.fail("x")):
        with pytest.raises(StreamClosed):
            late()


def accumulate(chunks: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """What a client builds from the chunks: the whole message and its finish reason."""
    message: dict[str, Any] = {"role": "assistant"}
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for body in chunks:
        for choice in body["choices"]:
            delta = choice["delta"]
            for key in ("content", "refusal", "reasoning_content"):
                if key in delta:
                    message[key] = message.get(key, "") + delta[key]
            for fragment in delta.get("tool_calls", []):
                slot = calls.setdefault(fragment["index"], {})
                slot.update({k: v for k, v in fragment.items() if k in ("id", "type")})
                for kind in ("function", "custom"):
                    for key, value in fragment.get(kind, {}).items():
                        part = slot.setdefault(kind, {})
                        part[key] = part.get(key, "") + value
            finish = choice["finish_reason"] or finish
    message["content"] = message.get("content") or None
    message.setdefault("refusal", None)
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message, finish


SCENARIOS = {
    "text": ([chat_chunk({"content": "Hi"}), chat_chunk(finish="stop")], {}),
    "reasoning-and-calls": (
        [
            chat_chunk({"reasoning_content": "Plan."}),
            chat_chunk({"content": "Calling."}),
            chat_chunk({"tool_calls": [call(0, '{"a":', "call_a", "f")]}),
            chat_chunk({"tool_calls": [call(1, "{}", "call_b", "g")]}),
            chat_chunk({"tool_calls": [call(0, "1}")]}),
            chat_chunk(finish="tool_calls"),
        ],
        {},
    ),
    "custom": (
        [
            chat_chunk({"tool_calls": [call(0, '{"input":"x\\ty"}', "call_p", "apply_patch")]}),
            chat_chunk(finish="tool_calls"),
        ],
        {"tools": PATCH_TOOL},
    ),
    "refusal-cut-off": ([chat_chunk({"refusal": "No"}), chat_chunk(finish="length")], {}),
    "summary": ([*REASONING_THEN_TEXT], {"reasoning_events": "summary"}),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_stream_adds_up_to_the_non_streamed_completion(name: str) -> None:
    chunks_in, context = SCENARIOS[name]
    events = upstream(chunks_in, make_context(**context))
    message, finish = accumulate(translate(events))
    whole = response_to_chat(events[-1]["response"], chat_context())
    expected = {**whole["choices"][0]["message"]}
    del expected["annotations"]
    assert message == expected
    assert finish == whole["choices"][0]["finish_reason"]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    machine = ResponsesToChatStream(chat_context(**case.get("context", {})))
    chunks: list[dict[str, Any]] = []
    for item in case["events"]:
        assert_valid_stream_event(item)
        chunks += machine.feed(item)
    chunks += machine.fail(**case["fail"]) if "fail" in case else finish(machine)
    assert chunks == case["chunks"]
    body = [c for c in chunks if "error" not in c]
    assert_valid_chat_stream(body)


def test_malformed_upstream_events_never_raise() -> None:
    """Every fixture stream with fields dropped or replaced by junk: chunks stay valid."""
    rng = random.Random(4)
    streams = [json.loads(path.read_text())["events"] for path in sorted(FIXTURES.glob("*.json"))]
    for _ in range(300):
        machine = ResponsesToChatStream(chat_context(include_usage=True, include_logprobs=True))
        chunks: list[dict[str, Any]] = []
        for item in rng.choice(streams):
            if machine.phase is not StreamPhase.OPEN:
                break
            chunks += machine.feed(mutate(item, rng) if rng.random() < 0.3 else item)
        chunks += finish(machine)
        errors = [c for c in chunks if "error" in c]
        assert errors in ([], [chunks[-1]])
        for body in chunks[: len(chunks) - len(errors)]:
            assert_valid_chat_chunk(body)
