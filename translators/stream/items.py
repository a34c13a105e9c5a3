"""Output items of a streamed response: each owns its events, indexes, id and final state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, Literal, TypeVar

from diglot.translators.content import message_item, output_text_part, refusal_part
from diglot.translators.context import RestoredTool, Seal
from diglot.translators.reasoning import ReasoningMode, reasoning_item, reasoning_part
from diglot.translators.responses import FinalItemStatus, message_phase
from diglot.translators.responses_shapes import (
    Logprob,
    MessagePart,
    ResponseCompactionItem,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseToolCall,
)
from diglot.translators.stream.emitter import Emitter
from diglot.translators.tools import CustomInputDecoder, tool_call_item

_Final = TypeVar("_Final", bound=ResponseOutputItem)


def _joined(fragments: list[str]) -> str:
    """Joins the fragments once and keeps the result, so asking again costs nothing."""
    text = "".join(fragments)
    fragments[:] = [text]
    return text


class StreamedItem(ABC, Generic[_Final]):
    """One entry of `output`: announced when created, closed once with its final content."""

    __slots__ = ("_final", "item_id", "output_index")

    def __init__(self, output_index: int, item_id: str) -> None:
        self.output_index = output_index
        self.item_id = item_id
        self._final: _Final | None = None

    @property
    def closed(self) -> bool:
        return self._final is not None

    def close(self, out: Emitter, status: FinalItemStatus) -> None:
        final = self._snapshot(status)
        self._final = final
        self._finish(out, final)
        out.emit(
            {"type": "response.output_item.done", "output_index": self.output_index, "item": final}
        )

    def final(self, status: FinalItemStatus) -> _Final:
        """The item as closed, or as it stands with `status` if the stream broke first."""
        return self._final if self._final is not None else self._snapshot(status)

    @abstractmethod
    def _snapshot(self, status: FinalItemStatus) -> _Final: ...

    @abstractmethod
    def _finish(self, out: Emitter, final: _Final) -> None:
        """Emits the item's own closing events, those before `response.output_item.done`."""


class _Part:
    """One content part of a message: answer text or refusal."""

    __slots__ = ("fragments", "index", "kind", "logprobs")

    def __init__(self, kind: Literal["output_text", "refusal"], index: int) -> None:
        self.kind = kind
        self.index = index
        self.fragments: list[str] = []
        self.logprobs: list[Logprob] = []

    def final(self) -> MessagePart:
        text = _joined(self.fragments)
        return (
            output_text_part(text, self.logprobs)
            if self.kind == "output_text"
            else refusal_part(text)
        )


class StreamedMessage(StreamedItem[ResponseOutputMessage]):
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

    def add_text(self, out: Emitter, delta: str, logprobs: list[Logprob]) -> None:
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
        empty: MessagePart = output_text_part("", []) if kind == "output_text" else refusal_part("")
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

    def _close_part(self, out: Emitter, part: _Part, final: MessagePart) -> None:
        item_id, output_index, index = self.item_id, self.output_index, part.index
        if final["type"] == "output_text":
            out.emit(
                {
                    "type": "response.output_text.done",
                    "item_id": item_id,
                    "output_index": output_index,
                    "content_index": index,
                    "text": final["text"],
                    "logprobs": final["logprobs"],
                }
            )
        else:
            out.emit(
                {
                    "type": "response.refusal.done",
                    "item_id": item_id,
                    "output_index": output_index,
                    "content_index": index,
                    "refusal": final["refusal"],
                }
            )
        out.emit(
            {
                "type": "response.content_part.done",
                "item_id": item_id,
                "output_index": output_index,
                "content_index": index,
                "part": final,
            }
        )

    def _snapshot(self, status: FinalItemStatus) -> ResponseOutputMessage:
        item = message_item(self.item_id, [part.final() for part in self._parts], status)
        item["phase"] = message_phase(self.followed)
        return item

    def _finish(self, out: Emitter, final: ResponseOutputMessage) -> None:
        if self._parts:
            self._close_part(out, self._parts[-1], final["content"][-1])


class StreamedReasoning(StreamedItem[ResponseReasoningItem]):
    """A reasoning item streamed as one summary part or as raw reasoning text (`content`)."""

    __slots__ = ("_fragments", "_mode", "_seal")

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
        self._fragments: list[str] = []
        item = reasoning_item(item_id, None, mode, "in_progress")
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})
        part = reasoning_part(mode, "")
        if mode == "summary":
            out.emit(
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": item_id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "part": part,
                }
            )
        else:
            out.emit(
                {
                    "type": "response.content_part.added",
                    "item_id": item_id,
                    "output_index": output_index,
                    "content_index": 0,
                    "part": part,
                }
            )

    def add(self, out: Emitter, delta: str) -> None:
        self._fragments.append(delta)
        if self._mode == "summary":
            out.emit(
                {
                    "type": "response.reasoning_summary_text.delta",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "summary_index": 0,
                    "delta": delta,
                }
            )
        else:
            out.emit(
                {
                    "type": "response.reasoning_text.delta",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "content_index": 0,
                    "delta": delta,
                }
            )

    def _snapshot(self, status: FinalItemStatus) -> ResponseReasoningItem:
        text = _joined(self._fragments)
        sealed = self._seal(text) if self._seal is not None else None
        return reasoning_item(self.item_id, text, self._mode, status, sealed)

    def _finish(self, out: Emitter, final: ResponseReasoningItem) -> None:
        item_id, output_index = self.item_id, self.output_index
        if self._mode == "summary":
            part = final["summary"][0]
            out.emit(
                {
                    "type": "response.reasoning_summary_text.done",
                    "item_id": item_id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "text": part["text"],
                }
            )
            out.emit(
                {
                    "type": "response.reasoning_summary_part.done",
                    "item_id": item_id,
                    "output_index": output_index,
                    "summary_index": 0,
                    "part": part,
                }
            )
            return
        part = final["content"][0]
        out.emit(
            {
                "type": "response.reasoning_text.done",
                "item_id": item_id,
                "output_index": output_index,
                "content_index": 0,
                "text": part["text"],
            }
        )
        out.emit(
            {
                "type": "response.content_part.done",
                "item_id": item_id,
                "output_index": output_index,
                "content_index": 0,
                "part": part,
            }
        )


class StreamedToolCall(StreamedItem[ResponseToolCall]):
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
            out.emit(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "delta": fragment,
                }
            )
            return
        delta = decoder.feed(fragment)
        if delta:
            out.emit(
                {
                    "type": "response.custom_tool_call_input.delta",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "delta": delta,
                }
            )

    def _snapshot(self, status: FinalItemStatus) -> ResponseToolCall:
        decoder = self._decoder
        payload = _joined(self._fragments) if decoder is None else decoder.result()
        return tool_call_item(self.item_id, self._call_id, self._tool, payload, status)

    def _finish(self, out: Emitter, final: ResponseToolCall) -> None:
        if final["type"] == "function_call":
            out.emit(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "arguments": final["arguments"],
                }
            )
        else:
            out.emit(
                {
                    "type": "response.custom_tool_call_input.done",
                    "item_id": self.item_id,
                    "output_index": self.output_index,
                    "input": final["input"],
                }
            )


class StreamedWholeItem(StreamedItem[ResponseCompactionItem]):
    """An item made before the stream (a compaction): announced and closed at once, whole."""

    __slots__ = ("_item",)

    def __init__(self, out: Emitter, output_index: int, item: ResponseCompactionItem) -> None:
        super().__init__(output_index, item["id"])
        self._item = item
        out.emit({"type": "response.output_item.added", "output_index": output_index, "item": item})
        self.close(out, "completed")

    def _snapshot(self, status: FinalItemStatus) -> ResponseCompactionItem:
        return self._item

    def _finish(self, out: Emitter, final: ResponseCompactionItem) -> None:
        """Nothing streams between its announcement and its end."""
