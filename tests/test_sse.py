"""The SSE decoder (any line ending, any split) and OpenAI's framing on the way out."""

from __future__ import annotations

import orjson
import pytest

from diglot.proxy.sse import SSEDecoder, SSEError, SSEEvent, encode_events

STREAM = (
    b": comment\n"
    b"event: message\n"
    b'data: {"a":1}\n'
    b"\n"
    b"data: first line\n"
    b"data: second line\n"
    b"id: 7\n"
    b"retry: 100\n"
    b"\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    SSEEvent("message", b'{"a":1}'),
    SSEEvent(None, b"first line\nsecond line"),
    SSEEvent(None, b"no-space"),
    SSEEvent(None, b"[DONE]"),
]


def decode_in_pieces(data: bytes, size: int) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for start in range(0, len(data), size):
        events += decoder.feed(data[start : start + size])
    return events + decoder.close()


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_every_line_ending_and_split(ending: bytes, size: int) -> None:
    assert decode_in_pieces(STREAM.replace(b"\n", ending), size) == EVENTS


def test_crlf_split_between_chunks_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\ndata: y\r\n\r\n") == [SSEEvent(None, b"x"), SSEEvent(None, b"y")]


def test_events_are_returned_as_soon_as_they_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x"') == []
    assert decoder.feed(b":1}\n") == []
    assert decoder.feed(b"\n") == [SSEEvent(None, b'{"x":1}')]


def test_unterminated_last_event_counts_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.close() == [SSEEvent(None, b"[DONE]")]


def test_comment_only_and_empty_events_dispatch_nothing() -> None:
    assert decode_in_pieces(b": ping\n\n\n\nevent: x\n\n", 4) == []


def test_event_name_does_not_outlive_its_event() -> None:
    assert decode_in_pieces(b"event: x\n\ndata: y\n\n", 3) == [SSEEvent(None, b"y")]


def test_an_endless_line_is_an_error() -> None:
    decoder = SSEDecoder()
    with pytest.raises(SSEError):
        for _ in range(20):
            decoder.feed(b"x" * (1024 * 1024))


def test_encode_events_uses_openai_framing() -> None:
    events = [
        {"type": "response.created", "sequence_number": 0},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "é\n"},
    ]
    assert encode_events(events) == (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
        b"event: response.output_text.delta\ndata: " + orjson.dumps(events[1]) + b"\n\n"
    )
    assert b"\r" not in encode_events(events)
