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
        data, event = self._data, self._event
        for line in lines:  # the common lines are handled inline: this runs for every event
            if line[:6] == b"data: ":
                data.append(line[6:])
            elif line[:7] == b"event: ":
                event = line[7:].decode("utf-8", "replace")
            elif not line:  # a blank line: the pending event (if it has data) is complete
                if data:
                    events.append(SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = []
                event = None
            elif line[0] != 0x3A:  # ":" starts a comment
                name, sep, value = line.partition(b":")
                if sep and value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"event":
                    event = value.decode("utf-8", "replace")
        self._data, self._event = data, event
        return events

    def close(self) -> list[SSEEvent]:
        """At end of stream: an unterminated last event still counts (lenient to sloppy servers)."""
        line = self._buffer.rstrip(b"\r")
        self._buffer = b""
        return self.feed(line + b"\n\n" if line else b"\n")


def encode_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """OpenAI's framing: `event: <type>` and one `data:` line per event, LF, a blank line after."""
    parts: list[bytes] = []
    for event in events:
        parts += (b"event: ", event["type"].encode(), b"\ndata: ", dumps(event), b"\n\n")
    return b"".join(parts)
