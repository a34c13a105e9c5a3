"""Output items of a streamed response: each owns its events, indexes, id and final state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal, NamedTuple

from diglot.translators.content import message_item, output_text_part, refusal_part
from diglot.translators.context import RestoredTool, Seal
from diglot.translators.reasoning import ReasoningMode, reasoning_item, reasoning_part
from diglot.translators.responses import ItemStatus, message_phase
from diglot.translators.stream.emitter import Emitter
from diglot.translators.tools import CustomInputDecoder, tool_call_item


def _joined(fragments: list[str]) -> str:
    """Joins the fragments once and keeps the result, so asking again costs nothing."""
    text = "".join(fragments)
    fragments[:] = [text]
    return text


class OutputItem(ABC):
    """One entry of `output`: announced when created, closed once with its final content."""

    __slots__ = ("_final", "item_id", "output_index")

    def __init__(self, output_index: int, item_id: str) -> None:
        self.output_index = output_index
        self.item_id = item_id
        self._final: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        return self._final is not None

    def close(self, out: Emitter, status: ItemStatus) -> None:
        final = self._snapshot(status)
        self._final = final
        self._finish(out, final)
        out.emit(
            {"type": "response.output_item.done", "output_index": self.output_index, "item": final}
        )

    def final(self, status: ItemStatus) -> dict[str, Any]:
        """The item as closed, or as it stands with `status` if the stream broke first."""
        return self._final if self._final is not None else self._snapshot(status)

    @abstractmethod
    def _snapshot(self, status: ItemStatus) -> dict[str, Any]: ...

    @abstractmethod
    def _finish(self, out: Emitter, final: dict[str, Any]) -> None:
        """Emits the item's own closing events, those before `response.output_item.done`."""


class _Part:
    """One content part of a message: answer text or refusal."""

    __slots__ = ("fragments", "index", "kind", "logprobs")

    def __init__(self, kind: Literal["output_text", "refusal"], index: int) -> None:
        self.kind = kind
        self.index = index
        self.fragments: list[str] = []
        self.logprobs: list[dict[str, Any]] = []

    def final(self) -> dict[str, Any]:
        text = _joined(self.fragments)
        return (
            output_text_part(text, self.logprobs)
            if self.kind == "output_text"
            else refusal_part(text)
        )


class MessageItem(OutputItem):
    """The assistant message; a change between text and refusal starts a new part.

    Its `phase` is known when it closes: `followed` before, if another item opened after it.
    """

    __slots__ = ("_parts", "followed")

    def __init__(self, out: Emitter, output_index: int, item_id: str) -> None:
        super().__init__(output_index, item_id)
        self._parts: list[_Part] = []
        self.followed = False
        item = message_item(item_id, [], "in_progress")
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})

    def add_text(self, out: Emitter, delta: str, logprobs: list[dict[str, Any]]) -> None:
        part = self._part(out, "output_text")
        part.fragments.append(delta)
        if logprobs:
            part.logprobs.extend(logprobs)
        out.emit(
            {
                "type": "response.output_text.delta",
                "item_id": self.item_id,
                "output_index": self.output_index,
                "content_index": part.index,
                "delta": delta,
                "logprobs": logprobs,
            }
        )

    def add_refusal(self, out: Emitter, delta: str) -> None:
        part = self._part(out, "refusal")
        part.fragments.append(delta)
        out.emit(
            {
                "type": "response.refusal.delta",
                "item_id": self.item_id,
                "output_index": self.output_index,
                "content_index": part.index,
                "delta": delta,
            }
        )

    def _part(self, out: Emitter, kind: Literal["output_text", "refusal"]) -> _Part:
        parts = self._parts
        if parts:
            if parts[-1].kind == kind:
                return parts[-1]
            self._close_part(out, parts[-1], parts[-1].final())
        part = _Part(kind, len(parts))
        parts.append(part)
        empty = output_text_part("", []) if kind == "output_text" else refusal_part("")
        out.emit(
            {
                "type": "response.content_part.added",
                "item_id": self.item_id,
                "output_index": self.output_index,
                "content_index": part.index,
                "part": empty,
            }
        )
        return part

    def _close_part(self, out: Emitter, part: _Part, final: dict[str, Any]) -> None:
        where = {
            "item_id": self.item_id,
            "output_index": self.output_index,
            "content_index": part.index,
        }
        if part.kind == "output_text":
            text = {"text": final["text"], "logprobs": final["logprobs"]}
            out.emit({"type": "response.output_text.done", **where, **text})
        else:
            out.emit({"type": "response.refusal.done", **where, "refusal": final["refusal"]})
        out.emit({"type": "response.content_part.done", **where, "part": final})

    def _snapshot(self, status: ItemStatus) -> dict[str, Any]:
        item = message_item(self.item_id, [part.final() for part in self._parts], status)
        item["phase"] = message_phase(self.followed)
        return item

    def _finish(self, out: Emitter, final: dict[str, Any]) -> None:
        if self._parts:
            self._close_part(out, self._parts[-1], final["content"][-1])


class _ReasoningEvents(NamedTuple):
    part_added: str
    delta: str
    text_done: str
    part_done: str
    index_key: str


_REASONING_EVENTS = {
    "text": _ReasoningEvents(
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "content_index",
    ),
    "summary": _ReasoningEvents(
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "summary_index",
    ),
}


class ReasoningItem(OutputItem):
    """A reasoning item streamed as raw reasoning text or as one summary part."""

    __slots__ = ("_events", "_fragments", "_mode", "_seal")

    def __init__(
        self,
        out: Emitter,
        output_index: int,
        item_id: str,
        mode: ReasoningMode,
        seal: Seal | None = None,
    ) -> None:
        super().__init__(output_index, item_id)
        self._mode = mode
        self._seal = seal
        self._events = _REASONING_EVENTS[mode]
        self._fragments: list[str] = []
        item = reasoning_item(item_id, None, mode, "in_progress")
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})
        part = reasoning_part(mode, "")
        out.emit({"type": self._events.part_added, **self._where(), "part": part})

    def add(self, out: Emitter, delta: str) -> None:
        self._fragments.append(delta)
        events = self._events
        out.emit(
            {
                "type": events.delta,
                "item_id": self.item_id,
                "output_index": self.output_index,
                events.index_key: 0,
                "delta": delta,
            }
        )

    def _where(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "output_index": self.output_index,
            self._events.index_key: 0,
        }

    def _snapshot(self, status: ItemStatus) -> dict[str, Any]:
        text = _joined(self._fragments)
        sealed = self._seal(text) if self._seal is not None else None
        return reasoning_item(self.item_id, text, self._mode, status, sealed)

    def _finish(self, out: Emitter, final: dict[str, Any]) -> None:
        part = (final["summary"] if self._mode == "summary" else final["content"])[0]
        out.emit({"type": self._events.text_done, **self._where(), "text": part["text"]})
        out.emit({"type": self._events.part_done, **self._where(), "part": part})


class ToolCallItem(OutputItem):
    """A function call (arguments passed on as they come) or custom tool call (input decoded)."""

    __slots__ = ("_call_id", "_decoder", "_fragments", "_tool")

    def __init__(
        self, out: Emitter, output_index: int, item_id: str, call_id: str, tool: RestoredTool
    ) -> None:
        super().__init__(output_index, item_id)
        self._call_id = call_id
        self._tool = tool
        self._fragments: list[str] = []
        self._decoder = CustomInputDecoder() if tool.kind == "custom" else None
        item = tool_call_item(item_id, call_id, tool, "", "in_progress")
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})

    def add(self, out: Emitter, fragment: str) -> None:
        decoder = self._decoder
        if decoder is None:
            self._fragments.append(fragment)
            kind, delta = "response.function_call_arguments.delta", fragment
        else:
            delta = decoder.feed(fragment)
            if not delta:
                return
            kind = "response.custom_tool_call_input.delta"
        out.emit(
            {
                "type": kind,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "delta": delta,
            }
        )

    def _snapshot(self, status: ItemStatus) -> dict[str, Any]:
        decoder = self._decoder
        payload = _joined(self._fragments) if decoder is None else decoder.result()
        return tool_call_item(self.item_id, self._call_id, self._tool, payload, status)

    def _finish(self, out: Emitter, final: dict[str, Any]) -> None:
        where = {"item_id": self.item_id, "output_index": self.output_index}
        if self._decoder is None:
            out.emit(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "arguments": final["arguments"],
                }
            )
        else:
            out.emit(
                {"type": "response.custom_tool_call_input.done", **where, "input": final["input"]}
            )


class WholeItem(OutputItem):
    """An item made before the stream (a compaction): announced and closed at once, whole."""

    __slots__ = ("_item",)

    def __init__(self, out: Emitter, output_index: int, item: dict[str, Any]) -> None:
        super().__init__(output_index, item["id"])
        self._item = item
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})
        self.close(out, "completed")

    def _snapshot(self, status: ItemStatus) -> dict[str, Any]:
        return self._item

    def _finish(self, out: Emitter, final: dict[str, Any]) -> None:
        """Nothing streams between its announcement and its end."""
