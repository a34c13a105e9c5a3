"""Where a translated stream stands: what every stream translator says about its own end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


class StreamPhase(Enum):
    """OPEN until a translator has produced its last piece, then FINISHED or FAILED for good."""

    OPEN = "open"
    FINISHED = "finished"  # the answer ended (completed, or cut off by a limit or a filter)
    FAILED = "failed"  # the stream ended on an error, which the client was sent


class StreamClosed(RuntimeError):
    """A translator was fed after its stream ended: a bug in the caller, not the upstream's."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """Why a stream failed, as the client was told."""

    message: str
    code: str | None


class StreamTranslator(Protocol):
    """One upstream stream in, the client's pieces out; `phase` says when it is over.

    The pieces are each translator's typed shapes (Responses events, Chat chunks): plain dicts.

    Once it is, `usage` is the answer's Responses usage if known and `error` why it failed.
    """

    @property
    def phase(self) -> StreamPhase: ...

    @property
    def usage(self) -> Mapping[str, Any] | None: ...

    @property
    def error(self) -> StreamError | None: ...

    def feed(self, payload: dict[str, Any]) -> list[Any]: ...

    def finish(self) -> list[Any]: ...

    def fail(self, message: str, code: str | None = None) -> list[Any]: ...


def stream_closed(phase: StreamPhase) -> StreamClosed:
    """The error for feeding a translator whose stream is over."""
    return StreamClosed(f"The stream is over ({phase.value}): nothing more can be fed to it.")


_ENDINGS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def ends_response(event_type: object) -> bool:
    """Whether a Responses stream event of this type is the last of its response (or of a turn
    that never became one), for code that relays events it does not translate."""
    return event_type in _ENDINGS
