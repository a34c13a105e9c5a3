"""Chat `n > 1` streamed: the chunk streams of n choices, each translated alone, as one stream."""

from __future__ import annotations

from typing import Any

from diglot.translators.stream.lifecycle import StreamClosed, StreamPhase, stream_closed
from diglot.translators.usage import sum_chat_usage

Chunks = list[dict[str, Any]]


class ChoicesFanIn:
    """Merges the chunks of choices 0..n-1 in the order they arrive, as one Chat stream.

    Each choice's usage chunk is held back: when every choice has ended, one chunk carries
    their summed usage (FINISHED). The first error chunk ends the merged stream (FAILED), the
    other choices unfinished. Feeding it after that, or feeding a choice that ended, raises
    `StreamClosed`.
    """

    __slots__ = ("_streaming", "_usages", "phase")

    def __init__(self, n: int) -> None:
        self._streaming = set(range(n))
        self._usages: Chunks = []
        self.phase = StreamPhase.OPEN

    def feed(self, index: int, chunks: Chunks) -> Chunks:
        """What to send of choice `index`'s next chunks: all but its usage, up to an error."""
        self._check(index)
        out: Chunks = []
        for chunk in chunks:
            if not chunk.get("choices") and "usage" in chunk:
                self._usages.append(chunk)
                continue
            out.append(chunk)
            if "error" in chunk:
                self.phase = StreamPhase.FAILED
                break
        return out

    def end(self, index: int) -> Chunks:
        """Choice `index` has no more chunks; after the last choice, the summed usage chunk."""
        self._check(index)
        self._streaming.remove(index)
        if self._streaming:
            return []
        self.phase = StreamPhase.FINISHED
        if not self._usages:
            return []
        usages = [chunk["usage"] or {} for chunk in self._usages]
        return [{**self._usages[0], "usage": sum_chat_usage(usages)}]

    def _check(self, index: int) -> None:
        if self.phase is not StreamPhase.OPEN:
            raise stream_closed(self.phase)
        if index not in self._streaming:
            raise StreamClosed(f"Choice {index} is not streaming: it ended or never was.")
