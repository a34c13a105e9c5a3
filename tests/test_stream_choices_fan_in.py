"""n choices' chunk streams -> one Chat stream: exact chunk sequences for every way it ends."""

from __future__ import annotations

from typing import Any

import pytest

from diglot.translators.stream.choices_fan_in import ChoicesFanIn
from diglot.translators.stream.lifecycle import StreamClosed, StreamPhase

ENVELOPE = {
    "id": "chatcmpl-test",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "m",
    "service_tier": None,
    "system_fingerprint": None,
    "usage": None,
}


def text(index: int, content: str, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": index, "delta": {"content": content}, "logprobs": None}
    return {**ENVELOPE, "choices": [{**choice, "finish_reason": finish}]}


def usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        **ENVELOPE,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


ERROR = {"error": {"message": "Overloaded.", "type": "server_error", "param": None, "code": None}}


def test_choices_interleave_in_arrival_order() -> None:
    fan_in = ChoicesFanIn(2)
    assert fan_in.feed(1, [text(1, "b")]) == [text(1, "b")]
    assert fan_in.feed(0, [text(0, "a"), text(0, "", "stop")]) == [
        text(0, "a"),
        text(0, "", "stop"),
    ]
    assert fan_in.end(0) == []
    assert fan_in.phase is StreamPhase.OPEN
    assert fan_in.feed(1, [text(1, "", "stop")]) == [text(1, "", "stop")]
    assert fan_in.end(1) == []
    assert fan_in.phase is StreamPhase.FINISHED


def test_usage_chunks_are_held_and_sent_once_summed_after_the_last_choice() -> None:
    fan_in = ChoicesFanIn(3)
    assert fan_in.feed(2, [text(2, "c", "stop"), usage(10, 1, 0)]) == [text(2, "c", "stop")]
    assert fan_in.end(2) == []
    assert fan_in.feed(0, [text(0, "a", "stop"), usage(10, 2, 1)]) == [text(0, "a", "stop")]
    assert fan_in.end(0) == []
    assert fan_in.feed(1, [usage(10, 3, 2)]) == []
    assert fan_in.end(1) == [
        {
            **ENVELOPE,
            "choices": [],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 6,
                "total_tokens": 36,
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        }
    ]
    assert fan_in.phase is StreamPhase.FINISHED


def test_a_usage_chunk_without_counts_still_ends_with_one_usage_chunk() -> None:
    fan_in = ChoicesFanIn(2)
    fan_in.feed(0, [{**ENVELOPE, "choices": []}])
    fan_in.end(0)
    assert fan_in.end(1) == [{**ENVELOPE, "choices": [], "usage": {}}]


def test_no_usage_chunk_when_no_choice_sent_one() -> None:
    fan_in = ChoicesFanIn(2)
    fan_in.feed(0, [text(0, "a", "stop")])
    assert fan_in.end(0) == [] and fan_in.end(1) == []
    assert fan_in.phase is StreamPhase.FINISHED


def test_the_first_error_ends_every_choice() -> None:
    fan_in = ChoicesFanIn(2)
    fan_in.feed(0, [usage(1, 1, 0)])
    assert fan_in.feed(1, [text(1, "b"), ERROR, text(1, "late")]) == [text(1, "b"), ERROR]
    assert fan_in.phase is StreamPhase.FAILED
    with pytest.raises(StreamClosed):
        fan_in.feed(0, [text(0, "a")])
    with pytest.raises(StreamClosed):
        fan_in.end(0)


def test_feeding_after_the_end_or_an_ended_choice_raises() -> None:
    fan_in = ChoicesFanIn(2)
    fan_in.end(0)
    with pytest.raises(StreamClosed):
        fan_in.feed(0, [text(0, "a")])
    with pytest.raises(StreamClosed):
        fan_in.end(0)
    with pytest.raises(StreamClosed):
        fan_in.feed(2, [text(2, "c")])
    fan_in.end(1)
    with pytest.raises(StreamClosed):
        fan_in.feed(1, [text(1, "b")])
