"""Server-sent events: an incremental decoder for upstream streams and the encoder for clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from diglot.proxy.jsonenc import dumps

DONE = b"[DONE]"
_MAX_PENDING = 16 * 1024 * 1024


class SSEError(Exception):
    """The upstream's stream cannot be read as server-sent events."""


class SSEEvent(NamedTuple):
    """One dispatched event: its `event:` name (or None) and its joined `data:` bytes."""

    event: str | None
    data: bytes


class SSEDecoder:
    """Turns arbitrary byte chunks into events; line endings LF, CRLF or CR, split anywhere."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk, in order."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            held = buffer.endswith(b"\r")  # may be the first half of a CRLF
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buffer = buffer[:-1] + b"\r"
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > _MAX_PENDING:
            raise SSEError("an event line exceeds 16 MiB")
        events: list[SSEEvent] = []
        for line in lines:
            if line[:6] == b"data: ":  # the common line, handled inline
                self._data.append(line[6:])
            elif line:
                self._field(line)
            else:
                self._dispatch(events)
        return events

    def close(self) -> list[SSEEvent]:
        """At end of stream: an unterminated last event still counts (lenient to sloppy servers)."""
        events: list[SSEEvent] = []
        line = self._buffer.rstrip(b"\r")
        self._buffer = b""
        if line:
            self.feed(line + b"\n")
        self._dispatch(events)
        return events

    def _dispatch(self, events: list[SSEEvent]) -> None:
        """A blank line: the pending event (if it has data) is complete."""
        data = self._data
        if data:
            events.append(SSEEvent(self._event, data[0] if len(data) == 1 else b"\n".join(data)))
            self._data = []
        self._event = None

    def _field(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ":" starts a comment
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def encode_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """OpenAI's framing: `event: <type>` and one `data:` line per event, LF, a blank line after."""
    parts: list[bytes] = []
    for event in events:
        parts += (b"event: ", event["type"].encode(), b"\ndata: ", dumps(event), b"\n\n")
    return b"".join(parts)
