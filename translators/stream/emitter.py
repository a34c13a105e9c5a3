"""The single source of `sequence_number`s for one Responses event stream."""

from __future__ import annotations

from diglot.translators.responses_shapes import ResponseStreamEvent


class Emitter:
    """Stamps each event with the next sequence number and holds it until the caller drains."""

    __slots__ = ("_events", "_next")

    def __init__(self) -> None:
        self._next = 0
        self._events: list[ResponseStreamEvent] = []

    def emit(self, event: ResponseStreamEvent) -> None:
        event["sequence_number"] = self._next
        self._next += 1
        self._events.append(event)

    def drain(self) -> list[ResponseStreamEvent]:
        """The events emitted since the last drain, in order."""
        events = self._events
        self._events = []
        return events
