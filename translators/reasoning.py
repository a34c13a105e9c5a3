"""Reasoning: Responses `reasoning` items and settings <-> Chat `reasoning_content`, `<think>`
text and `reasoning_effort`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from diglot.translators.responses_models import Reasoning, ReasoningItem
from diglot.translators.responses_shapes import ItemStatus, ReasoningPart, ResponseReasoningItem

ReasoningMode = Literal["text", "summary"]
Segment = tuple[Literal["reasoning", "text"], str]

_OPEN = "<think>"
_CLOSE = "</think>"


def _partial_close(text: str) -> int:
    """Length of the longest tail of `text` that could begin a `</think>` tag."""
    if "<" not in text[-len(_CLOSE) :]:
        return 0
    for size in range(min(len(_CLOSE) - 1, len(text)), 0, -1):
        if text.endswith(_CLOSE[:size]):
            return size
    return 0


class ThinkSplitter:
    """Splits a leading `<think>…</think>` block off answer text arriving in arbitrary chunks."""

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state: Literal["start", "lead", "think", "after", "text"] = "start"
        self._held = ""

    @property
    def passthrough(self) -> bool:
        """Past the think block (or there was none): all further text is answer text."""
        return self._state == "text"

    def feed(self, text: str) -> list[Segment]:
        buffered = self._held + text if self._held else text
        self._held = ""
        state = self._state
        if state == "text":
            return [("text", buffered)] if buffered else []
        if state == "start":
            stripped = buffered.lstrip()
            if stripped.startswith(_OPEN):
                self._state = "lead"
                return self._lead(stripped[len(_OPEN) :])
            if _OPEN.startswith(stripped):
                self._held = buffered
                return []
            self._state = "text"
            return [("text", buffered)]
        if state == "lead":
            return self._lead(buffered)
        if state == "think":
            return self._think(buffered)
        answer = buffered.lstrip()
        if not answer:
            return []
        self._state = "text"
        return [("text", answer)]

    def flush(self) -> list[Segment]:
        """The end: an unclosed think block is all reasoning, an undecided start is text."""
        held, state = self._held, self._state
        self._held = ""
        self._state = "text"
        if state == "think":
            held = held.rstrip()
            return [("reasoning", held)] if held else []
        return [("text", held)] if held else []

    def _lead(self, text: str) -> list[Segment]:
        body = text.lstrip()
        if not body:
            return []
        self._state = "think"
        return self._think(body)

    def _think(self, text: str) -> list[Segment]:
        end = text.find(_CLOSE)
        if end >= 0:
            reasoning = text[:end].rstrip()
            answer = text[end + len(_CLOSE) :].lstrip()
            self._state = "text" if answer else "after"
            segments: list[Segment] = [("reasoning", reasoning)] if reasoning else []
            if answer:
                segments.append(("text", answer))
            return segments
        body_end = len(text) - _partial_close(text)
        emit_end = len(text[:body_end].rstrip())
        self._held = text[emit_end:]
        return [("reasoning", text[:emit_end])] if emit_end else []


def split_think(text: str) -> tuple[str, str]:
    """A whole answer's leading think block and the answer after it; most answers have none."""
    if not text.lstrip().startswith(_OPEN):
        return "", text
    splitter = ThinkSplitter()
    thought: list[str] = []
    answer: list[str] = []
    for kind, piece in [*splitter.feed(text), *splitter.flush()]:
        (thought if kind == "reasoning" else answer).append(piece)
    return "".join(thought), "".join(answer)


def reasoning_part(mode: ReasoningMode, text: str) -> ReasoningPart:
    """Reasoning as raw `reasoning_text` content or as a `summary_text` summary part."""
    return {"type": "summary_text" if mode == "summary" else "reasoning_text", "text": text}


def reasoning_item(
    item_id: str,
    text: str | None,
    mode: ReasoningMode,
    status: ItemStatus,
    sealed: str | None = None,
) -> ResponseReasoningItem:
    """The `reasoning` output item; `text` None gives the empty item a stream announces first.

    `sealed` is the text as `encrypted_content`, for clients that carry it to the next turn.
    """
    parts = [] if text is None else [reasoning_part(mode, text)]
    item: ResponseReasoningItem
    if mode == "summary":
        item = {"id": item_id, "type": "reasoning", "status": status, "summary": parts}
    else:
        item = {
            "id": item_id,
            "type": "reasoning",
            "status": status,
            "summary": [],
            "content": parts,
        }
    if sealed is not None:
        item["encrypted_content"] = sealed
    return item


def reasoning_item_to_chat(item: ReasoningItem) -> str:
    """A reasoning input item as `reasoning_content`: its raw text, else its summary."""
    return reasoning_text(
        [part.text for part in item.content or ()], [part.text for part in item.summary]
    )


# How `reasoning_content` joins the parts of one reasoning item, and reasoning items.
PART_SEPARATORS = {"text": "", "summary": "\n\n"}
ITEM_SEPARATOR = "\n\n"


def join_reasoning(earlier: str | None, texts: list[str]) -> str:
    """Reasoning items that precede one assistant turn, after any it already carries."""
    text = ITEM_SEPARATOR.join(texts)
    return f"{earlier}{ITEM_SEPARATOR}{text}" if earlier else text


def reasoning_text(content: list[str], summary: list[str]) -> str:
    """One reasoning item's `reasoning_content`: its raw text parts, else its summary parts."""
    if content:
        return PART_SEPARATORS["text"].join(content)
    return PART_SEPARATORS["summary"].join(summary)


def output_reasoning_to_chat(item: Mapping[str, Any]) -> str:
    """An upstream `reasoning` output item as `reasoning_content`."""
    return reasoning_text(_texts(item.get("content")), _texts(item.get("summary")))


def _texts(parts: object) -> list[str]:
    if not isinstance(parts, list):
        return []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def effort_to_chat(reasoning: Reasoning | None, body: dict[str, Any]) -> None:
    """`reasoning.effort` -> `reasoning_effort`; Chat has no summary setting."""
    if reasoning is not None and reasoning.effort is not None:
        body["reasoning_effort"] = reasoning.effort


def effort_to_responses(effort: str | None, body: dict[str, Any]) -> None:
    """`reasoning_effort` -> `reasoning.effort`."""
    if effort is not None:
        body["reasoning"] = {"effort": effort}


def reasoning_echo(reasoning: Reasoning | None) -> dict[str, Any]:
    """The `reasoning` setting a response repeats, null where the request gave none."""
    return {
        "effort": reasoning.effort if reasoning else None,
        "summary": reasoning.summary if reasoning else None,
    }
