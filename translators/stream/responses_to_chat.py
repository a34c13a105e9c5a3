"""Responses stream events in, Chat Completions chunks out: one state machine per stream."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from diglot.translators.chat_shapes import (
    ChatCompletionChunk,
    ChatStreamPiece,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    FinishReason,
)
from diglot.translators.context import ChatContext
from diglot.translators.errors import error_to_chat
from diglot.translators.reasoning import ITEM_SEPARATOR, PART_SEPARATORS
from diglot.translators.responses import chat_envelope, choice_logprobs_to_chat, status_to_chat
from diglot.translators.stream.lifecycle import StreamError, StreamPhase, stream_closed
from diglot.translators.tools import TOOL_CALL_ITEMS, tool_call_delta, tool_call_item_to_chat
from diglot.translators.usage import usage_to_chat

Delta = ChoiceDelta
ReasoningField = Literal["text", "summary"]
TextField = Literal["content", "refusal"]


class _Item:
    """One upstream output item: counts what each of its parts has sent as deltas.

    A part's `.done` (or the item's) then adds only what the deltas did not carry, so text
    that arrives whole, or only at the end, still reaches the client exactly once.
    """

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}

    def _advance(self, part: int, text: str) -> None:
        self._sent[part] = self._sent.get(part, 0) + len(text)

    def _rest(self, part: int, full: object) -> str:
        if not isinstance(full, str):
            return ""
        sent = self._sent.get(part, 0)
        if len(full) <= sent:
            return ""
        self._sent[part] = len(full)
        return full[sent:]


class _Message(_Item):
    """An assistant message: answer text parts -> `content`, refusal parts -> `refusal`."""

    __slots__ = ()

    def delta(self, field: TextField, part: int, text: str) -> Delta:
        self._advance(part, text)
        return {"content": text} if field == "content" else {"refusal": text}

    def rest(self, field: TextField, part: int, full: object) -> list[Delta]:
        text = self._rest(part, full)
        if not text:
            return []
        return [{"content": text} if field == "content" else {"refusal": text}]

    def close(self, item: Mapping[str, Any]) -> list[Delta]:
        parts = item.get("content")
        deltas: list[Delta] = []
        for index, part in enumerate(parts if isinstance(parts, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "output_text":
                deltas += self.rest("content", index, part.get("text"))
            elif kind == "refusal":
                deltas += self.rest("refusal", index, part.get("refusal"))
        return deltas


class _Reasoning(_Item):
    """A reasoning item as `reasoning_content`: raw text or summary, whichever streams first.

    Parts and items are joined as the non-streamed translation joins them.
    """

    __slots__ = ("_field",)

    def __init__(self) -> None:
        super().__init__()
        self._field: ReasoningField | None = None

    def add(self, field: ReasoningField, part: int, text: object, after: bool, whole: bool) -> str:
        """The text to send for `part` (a delta, or with `whole` its full text); "" if none."""
        if self._field is None:
            self._field = field
        elif field != self._field:
            return ""
        opening = part not in self._sent
        if whole:
            text = self._rest(part, text)
        elif isinstance(text, str):
            self._advance(part, text)
        else:
            return ""
        if not text or not opening:
            return text
        if len(self._sent) > 1:
            return PART_SEPARATORS[field] + text
        return ITEM_SEPARATOR + text if after else text

    def close(self, item: Mapping[str, Any], after: bool) -> str:
        field = self._field
        if field is None:
            field = "text" if item.get("content") else "summary"
        parts = item.get("content" if field == "text" else "summary")
        texts = [
            self.add(field, index, part.get("text"), after, whole=True)
            for index, part in enumerate(parts if isinstance(parts, list) else ())
            if isinstance(part, dict)
        ]
        return "".join(texts)


class _ToolCall(_Item):
    """A function or custom tool call under its own Chat `index`; opened with id and name."""

    __slots__ = ("_custom", "index")

    def __init__(self, index: int, item: Mapping[str, Any]) -> None:
        super().__init__()
        self.index = index
        self._custom = item.get("type") == "custom_tool_call"

    def opening(self, item: Mapping[str, Any]) -> Delta:
        call = tool_call_item_to_chat(item, "")
        opened: ChoiceDeltaToolCall
        if call["type"] == "custom":  # the same literal twice: each branch narrows `call`
            opened = {"index": self.index, **call}
        else:
            opened = {"index": self.index, **call}
        return {"tool_calls": [opened]}

    def delta(self, fragment: str) -> Delta:
        self._advance(0, fragment)
        return {"tool_calls": [tool_call_delta(self.index, self._custom, fragment)]}

    def rest(self, full: object) -> list[Delta]:
        fragment = self._rest(0, full)
        if not fragment:
            return []
        return [{"tool_calls": [tool_call_delta(self.index, self._custom, fragment)]}]

    def close(self, item: Mapping[str, Any]) -> list[Delta]:
        return self.rest(item.get("input" if self._custom else "arguments"))


def _output_index(event: Mapping[str, Any]) -> int | None:
    index = event.get("output_index")
    return index if isinstance(index, int) else None


def _part_index(event: Mapping[str, Any], key: str) -> int:
    index = event.get(key)
    return index if isinstance(index, int) else 0


_Part = TypeVar("_Part", bound=_Item)
_Handler = Callable[["ResponsesToChatStream", dict[str, Any]], list[ChatStreamPiece]]
_UPSTREAM_ENDED = "The upstream stream ended before the response finished."
_OPEN = StreamPhase.OPEN  # a module global: an Enum member looked up on its class costs more


class ResponsesToChatStream:
    """Turns one upstream Responses event stream into chat.completion.chunk objects.

    The first chunk (the assistant role) goes out with the first lifecycle or content event.
    `phase` stays OPEN until the final chunks (FINISHED, with the upstream's Responses
    `usage`) or an error chunk (FAILED, with its `error`); feeding it after that raises
    `StreamClosed`. Each output item is one object, kept only while the upstream streams it.
    """

    __slots__ = (
        "_calls",
        "_ctx",
        "_envelope",
        "_index",
        "_items",
        "_reasoned",
        "_seen",
        "_started",
        "error",
        "phase",
        "usage",
    )
    _envelope: ChatCompletionChunk  # what each chunk copies, made with the first one

    def __init__(self, ctx: ChatContext, index: int = 0) -> None:
        self._ctx = ctx
        self._index = index
        self._started = False
        self.phase = StreamPhase.OPEN
        self.usage: dict[str, Any] | None = None
        self.error: StreamError | None = None
        self._items: dict[int | None, _Item] = {}
        self._seen = 0  # output indexes below this have been announced or streamed
        self._calls = 0  # tool calls opened so far: the next one's Chat index
        self._reasoned = False  # some reasoning text was sent: the next item's is set apart

    def feed(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        """The chunks for one parsed upstream event (often none)."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        kind = event.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, event) if handler is not None else []

    def finish(self) -> list[ChatStreamPiece]:
        """The upstream ended before its terminal event: an error chunk."""
        return self.fail(_UPSTREAM_ENDED)

    def fail(self, message: str, code: str | None = None) -> list[ChatStreamPiece]:
        """The upstream broke off: an error chunk, and the stream ends."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        return self._error({"message": message, "code": code})

    def _start(self, response: object) -> list[ChatStreamPiece]:
        """The first chunk, with the upstream's model and service tier when the event has them."""
        if self._started:
            return []
        self._started = True
        envelope = chat_envelope(
            self._ctx, response if isinstance(response, dict) else {}, "chat.completion.chunk"
        )
        if self._ctx.include_usage:
            envelope["usage"] = None
        self._envelope = envelope
        return [self._chunk({"role": "assistant", "content": ""})]

    def _chunk(
        self,
        delta: Delta,
        logprobs: ChoiceLogprobs | None = None,
        finish_reason: FinishReason | None = None,
    ) -> ChatCompletionChunk:
        chunk = self._envelope.copy()
        chunk["choices"] = [
            {
                "index": self._index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ]
        return chunk

    def _chunks(self, deltas: list[Delta]) -> list[ChatStreamPiece]:
        return [*self._start(None), *map(self._chunk, deltas)]

    def _lifecycle(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        return self._start(event.get("response"))

    def _item(self, event: Mapping[str, Any], kind: type[_Part]) -> _Part | None:
        """The item an event belongs to, created if the upstream never announced it."""
        key = _output_index(event)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = kind()
            self._note(key)
        return item if isinstance(item, kind) else None

    def _note(self, key: int | None) -> None:
        """Output indexes below `_seen` are the upstream's to finish; above, the terminal's."""
        if isinstance(key, int) and key >= self._seen:
            self._seen = key + 1

    def _text_delta(
        self, event: dict[str, Any], field: TextField = "content"
    ) -> list[ChatStreamPiece]:
        text = event.get("delta")
        if not text or not isinstance(text, str):
            return []
        chunks = [] if self._started else self._start(None)
        message = self._item(event, _Message)
        if message is not None:
            delta = message.delta(field, _part_index(event, "content_index"), text)
            logprobs = None
            if self._ctx.include_logprobs and field == "content":
                logprobs = choice_logprobs_to_chat(self._ctx, event.get("logprobs"))
            chunks.append(self._chunk(delta, logprobs))
        return chunks

    def _text_done(
        self, event: dict[str, Any], field: TextField, key: str
    ) -> list[ChatStreamPiece]:
        message = self._item(event, _Message)
        if message is None:
            return []
        index = _part_index(event, "content_index")
        return self._chunks(message.rest(field, index, event.get(key)))

    def _reasoning(
        self, event: dict[str, Any], field: ReasoningField, whole: bool
    ) -> list[ChatStreamPiece]:
        if not self._ctx.options.chat_reasoning_content:
            return []
        text = event.get("text" if whole else "delta")
        item = self._item(event, _Reasoning)
        if item is None or not text or not isinstance(text, str):
            return []
        index = _part_index(event, "content_index" if field == "text" else "summary_index")
        return self._reasoning_chunks(item.add(field, index, text, self._reasoned, whole))

    def _reasoning_chunks(self, text: str) -> list[ChatStreamPiece]:
        if not text:
            return []
        self._reasoned = True
        return self._chunks([{"reasoning_content": text}])

    def _call_delta(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        """An arguments or input fragment; one for a call never announced waits for its end."""
        fragment = event.get("delta")
        call = self._items.get(_output_index(event))
        if not fragment or not isinstance(fragment, str) or not isinstance(call, _ToolCall):
            return []
        return [self._chunk(call.delta(fragment))]

    def _call_done(self, event: dict[str, Any], key: str) -> list[ChatStreamPiece]:
        call = self._items.get(_output_index(event))
        return self._chunks(call.rest(event.get(key))) if isinstance(call, _ToolCall) else []

    def _item_added(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        item = event.get("item")
        self._note(_output_index(event))
        if not isinstance(item, dict) or item.get("type") not in TOOL_CALL_ITEMS:
            return []
        return self._chunks(self._open_call(_output_index(event), item)[1])

    def _open_call(self, key: int | None, item: Mapping[str, Any]) -> tuple[_ToolCall, list[Delta]]:
        call = _ToolCall(self._calls, item)
        self._calls += 1
        self._items[key] = call
        self._note(key)
        return call, [call.opening(item)]

    def _item_done(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        item = event.get("item")
        if not isinstance(item, dict):
            return []
        return self._chunks(self._close(_output_index(event), item))

    def _close(self, key: int | None, item: Mapping[str, Any]) -> list[Delta]:
        """The deltas that complete an item from its final state; the item is then forgotten."""
        kind = item.get("type")
        known = self._items.pop(key, None)
        self._note(key)
        if kind in TOOL_CALL_ITEMS:
            if isinstance(known, _ToolCall):
                return known.close(item)
            call, deltas = self._open_call(key, item)
            del self._items[key]
            return deltas + call.close(item)
        if kind == "message":
            return (known if isinstance(known, _Message) else _Message()).close(item)
        if kind == "reasoning" and self._ctx.options.chat_reasoning_content:
            reasoning = known if isinstance(known, _Reasoning) else _Reasoning()
            text = reasoning.close(item, self._reasoned)
            if text:
                self._reasoned = True
                return [{"reasoning_content": text}]
        return []

    def _terminal(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        """The answer ended: what the events left unsaid, the finish reason, then usage."""
        response = event.get("response")
        if not isinstance(response, dict):
            response = {}
        chunks = self._start(response)
        output = response.get("output")
        if isinstance(output, list):
            deltas: list[Delta] = []
            unfinished = [k for k in self._items if k is not None and 0 <= k < len(output)]
            for key in [*unfinished, *range(self._seen, len(output))]:
                if isinstance(output[key], dict):
                    deltas += self._close(key, output[key])
            chunks += map(self._chunk, deltas)
        self._items.clear()
        chunks.append(self._chunk({}, finish_reason=status_to_chat(response, self._calls > 0)))
        usage = response.get("usage")
        self.usage = usage if isinstance(usage, dict) else None
        if self._ctx.include_usage:
            chunk = self._envelope.copy()
            chunk["choices"] = []
            chunk["usage"] = usage_to_chat(self.usage) if self.usage is not None else None
            chunks.append(chunk)
        self.phase = StreamPhase.FINISHED
        return chunks

    def _failed(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        response = event.get("response")
        return self._error(response.get("error") if isinstance(response, dict) else None)

    def _error_event(self, event: dict[str, Any]) -> list[ChatStreamPiece]:
        error = event.get("error")
        if not isinstance(error, dict):
            error = {key: event.get(key) for key in ("message", "code", "param")}
        return self._error(error)

    def _error(self, error: object) -> list[ChatStreamPiece]:
        """The one error chunk that ends the stream."""
        self._items.clear()
        body, _ = error_to_chat(error, "The upstream response failed.")
        self.phase = StreamPhase.FAILED
        self.error = StreamError(body["error"]["message"], body["error"]["code"])
        return [body]


_HANDLERS: dict[object, _Handler] = {
    "response.created": ResponsesToChatStream._lifecycle,
    "response.queued": ResponsesToChatStream._lifecycle,
    "response.in_progress": ResponsesToChatStream._lifecycle,
    "response.output_item.added": ResponsesToChatStream._item_added,
    "response.output_item.done": ResponsesToChatStream._item_done,
    "response.output_text.delta": ResponsesToChatStream._text_delta,  # the most frequent
    "response.output_text.done": lambda s, e: s._text_done(e, "content", "text"),
    "response.refusal.delta": lambda s, e: s._text_delta(e, "refusal"),
    "response.refusal.done": lambda s, e: s._text_done(e, "refusal", "refusal"),
    "response.reasoning_text.delta": lambda s, e: s._reasoning(e, "text", False),
    "response.reasoning_text.done": lambda s, e: s._reasoning(e, "text", True),
    "response.reasoning_summary_text.delta": lambda s, e: s._reasoning(e, "summary", False),
    "response.reasoning_summary_text.done": lambda s, e: s._reasoning(e, "summary", True),
    "response.function_call_arguments.delta": ResponsesToChatStream._call_delta,
    "response.function_call_arguments.done": lambda s, e: s._call_done(e, "arguments"),
    "response.custom_tool_call_input.delta": ResponsesToChatStream._call_delta,
    "response.custom_tool_call_input.done": lambda s, e: s._call_done(e, "input"),
    "response.completed": ResponsesToChatStream._terminal,
    "response.incomplete": ResponsesToChatStream._terminal,
    "response.failed": ResponsesToChatStream._failed,
    "error": ResponsesToChatStream._error_event,
}
