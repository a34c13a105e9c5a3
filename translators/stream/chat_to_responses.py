"""Chat Completions chunks in, Responses stream events out: one state machine per stream."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from diglot.translators.content import chat_content_text
from diglot.translators.context import ResponseContext
from diglot.translators.errors import error_to_responses, responses_error
from diglot.translators.ids import CALL_ID_PREFIX, ITEM_PREFIXES
from diglot.translators.reasoning import Segment, ThinkSplitter
from diglot.translators.responses import (
    COMPLETED,
    IN_PROGRESS,
    Outcome,
    chat_reasoning_text,
    choice_logprobs_to_responses,
    failure_outcome,
    finish_reason_to_responses,
    now_seconds,
    response_object,
)
from diglot.translators.responses_shapes import (
    Response,
    ResponseCompactionItem,
    ResponseLifecycleEvent,
    ResponseOutputItem,
    ResponseStatus,
    ResponseStreamEvent,
    ResponseUsage,
    TerminalEventType,
)
from diglot.translators.stream.emitter import Emitter
from diglot.translators.stream.items import (
    StreamedItem,
    StreamedMessage,
    StreamedReasoning,
    StreamedToolCall,
    StreamedWholeItem,
)
from diglot.translators.stream.lifecycle import StreamError, StreamPhase, stream_closed
from diglot.translators.tools import chat_call_parts, tool_item_prefix
from diglot.translators.usage import usage_to_responses

_TERMINAL_EVENTS: dict[str, TerminalEventType] = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


def lapsed_to_failed(
    response: Response, message: str, sequence_number: int
) -> ResponseLifecycleEvent:
    """The terminal event of a response whose stream had no end (whoever made it is gone): the
    response as far as it got, failed with `message`, its unfinished items incomplete."""
    failed: Response = {**response, "status": "failed"}
    failed["error"] = responses_error(message, "server_error")
    failed["output"] = [_ended(item) for item in response["output"]]
    return {"type": "response.failed", "response": failed, "sequence_number": sequence_number}


def _ended(item: ResponseOutputItem) -> ResponseOutputItem:
    if item.get("status") != "in_progress":
        return item
    ended = dict(item)
    ended["status"] = "incomplete"
    return cast(ResponseOutputItem, ended)


_OPEN = StreamPhase.OPEN  # a module global: an Enum member looked up on its class costs more
_CUT_SHORT = Outcome("incomplete", "incomplete")  # a cancel: the open items end incomplete


class ChatToResponsesStream:
    """Turns one upstream chat.completion.chunk stream into the Responses event grammar.

    Reasoning and message items close when another item opens; tool calls stay open until the
    choice finishes, so fragments of parallel calls may interleave. The terminal event waits
    for `finish()` so that a usage chunk sent after `finish_reason` is included.

    `phase` stays OPEN until the terminal event is out; then `response` is the terminal
    response, `usage` its usage and, when FAILED, `error` its error. Feeding it after that
    raises `StreamClosed`.
    """

    __slots__ = (
        "_clock",
        "_ctx",
        "_finish_reason",
        "_items",
        "_last_tool",
        "_leading",
        "_model",
        "_open",
        "_out",
        "_started",
        "_think",
        "_tools",
        "_usage",
        "error",
        "phase",
        "response",
        "usage",
    )

    def __init__(
        self,
        ctx: ResponseContext,
        *,
        clock: Callable[[], int] = now_seconds,
        leading: Sequence[ResponseCompactionItem] = (),
    ) -> None:
        self._ctx = ctx
        self._leading = leading
        self._clock = clock
        self._out = Emitter()
        self._started = False
        self.phase = StreamPhase.OPEN
        self.response: Response | None = None
        self.usage: ResponseUsage | None = None
        self.error: StreamError | None = None
        self._items: list[StreamedItem[Any]] = []
        self._open: StreamedMessage | StreamedReasoning | None = None
        self._tools: dict[object, tuple[str, StreamedToolCall]] = {}  # key -> (upstream id, item)
        self._last_tool: object = None
        self._think = ThinkSplitter() if ctx.options.think_tags else None
        self._finish_reason: str | None = None
        self._model: str | None = None
        self._usage: Mapping[str, Any] | None = None

    def start(self) -> list[ResponseStreamEvent]:
        """`response.created` and `response.in_progress` with the empty in-progress response."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        self._begin()
        return self._out.drain()

    def feed(self, chunk: dict[str, Any]) -> list[ResponseStreamEvent]:
        """Events for one parsed upstream chunk (possibly none)."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        if not self._started:
            self._begin()
        error = chunk.get("error")
        if error is None and chunk.get("object") == "error":
            error = chunk
        if error is not None:
            self._terminate(failure_outcome(error_to_responses(error)))
            return self._out.drain()
        if self._model is None:
            model = chunk.get("model")
            if isinstance(model, str) and model:
                self._model = model
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return self._out.drain()
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0 and not self._finish_reason:
                self._choice(choice)
        return self._out.drain()

    def finish(self) -> list[ResponseStreamEvent]:
        """The upstream ended: the terminal event (failed if the model never finished)."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        self._begin()
        if self._finish_reason is None:
            error = responses_error("The upstream stream ended before the answer finished.")
            self._terminate(failure_outcome(error))
        else:
            self._terminate(finish_reason_to_responses(self._finish_reason))
        return self._out.drain()

    def complete_without_output(
        self, usage: Mapping[str, Any] | None = None
    ) -> list[ResponseStreamEvent]:
        """A turn prepared but not generated (WebSocket `generate: false`, or answered by its
        compaction alone): a whole stream of a completed response with no output but the leading
        items, which later turns can continue; `usage` is the Chat usage it cost, if any."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        self._begin()
        self._usage = usage
        self._terminate(COMPLETED)
        return self._out.drain()

    def fail(self, message: str, code: str | None = None) -> list[ResponseStreamEvent]:
        """The upstream broke off: `response.failed`, and the stream ends."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        self._begin()
        self._terminate(failure_outcome(responses_error(message, code)))
        return self._out.drain()

    def cancel(self) -> list[ResponseStreamEvent]:
        """The client cancelled (a background response): the open items closed incomplete,
        then the response as it stands with status `cancelled`, in a `response.incomplete`
        event (the API has no event of its own for a cancel); the stream ends."""
        if self.phase is not _OPEN:
            raise stream_closed(self.phase)
        self._begin()
        if self._think is not None:
            self._segments(self._think.flush(), {})
        for item in self._items:
            if not item.closed:
                item.close(self._out, "incomplete")
        self._terminate(_CUT_SHORT, status="cancelled")
        return self._out.drain()

    def snapshot(self) -> Response:
        """The response as it stands while the stream is open (a background response polled):
        its items so far, those not closed yet `in_progress`."""
        output: list[ResponseOutputItem] = []
        for item in self._items:
            shown = item.final("incomplete")
            if not item.closed:
                shown = shown.copy()
                shown["status"] = "in_progress"
            output.append(shown)
        return response_object(self._ctx, IN_PROGRESS, output, model=self._model)

    def _begin(self) -> None:
        if self._started:
            return
        self._started = True
        snapshot = response_object(self._ctx, IN_PROGRESS, [])
        self._out.emit({"type": "response.created", "response": snapshot})
        self._out.emit({"type": "response.in_progress", "response": snapshot})
        for item in self._leading:
            self._items.append(StreamedWholeItem(self._out, len(self._items), item))

    def _choice(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta")
        if delta and isinstance(delta, dict):
            reasoning = chat_reasoning_text(delta)
            if reasoning:
                self._reasoning(reasoning)
            content = delta.get("content")
            if content:
                text = content if type(content) is str else chat_content_text(content)
                if text:
                    self._content(text, choice)
            refusal = delta.get("refusal")
            if refusal and isinstance(refusal, str):
                self._message().add_refusal(self._out, refusal)
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._tool_fragment(call)
        finish_reason = choice.get("finish_reason")
        if finish_reason and isinstance(finish_reason, str):
            self._finish_reason = finish_reason
            if self._think is not None:
                self._segments(self._think.flush(), choice)
            status = finish_reason_to_responses(finish_reason).item_status
            for item in self._items:
                if not item.closed:
                    item.close(self._out, status)

    def _content(self, text: str, choice: Mapping[str, Any]) -> None:
        splitter = self._think
        if splitter is None:
            self._text(text, choice)
            return
        self._segments(splitter.feed(text), choice)
        if splitter.passthrough:
            self._think = None

    def _segments(self, segments: list[Segment], choice: Mapping[str, Any]) -> None:
        for kind, text in segments:
            if kind == "text":
                self._text(text, choice)
            else:
                self._reasoning(text)

    def _text(self, text: str, choice: Mapping[str, Any]) -> None:
        logprobs = choice_logprobs_to_responses(choice) if self._ctx.include_logprobs else []
        self._message().add_text(self._out, text, logprobs)

    def _message(self) -> StreamedMessage:
        item = self._open
        if isinstance(item, StreamedMessage):
            return item
        message = StreamedMessage(
            self._out, self._next_index(), self._ctx.new_id(ITEM_PREFIXES["message"])
        )
        self._open = message
        self._items.append(message)
        return message

    def _reasoning(self, text: str) -> None:
        item = self._open
        if not isinstance(item, StreamedReasoning):
            mode = self._ctx.options.reasoning_events
            item_id = self._ctx.new_id(ITEM_PREFIXES["reasoning"])
            item = StreamedReasoning(self._out, self._next_index(), item_id, mode, self._ctx.seal)
            self._open = item
            self._items.append(item)
        item.add(self._out, text)

    def _tool_fragment(self, call: Mapping[str, Any]) -> None:
        """Routes an arguments fragment to its call by `index`, or `id` where backends lack one.

        A new `id` at a known index is a new call: some backends (Ollama) give every call index 0.
        """
        call_id, name, arguments = chat_call_parts(call)
        index = call.get("index")
        key = index if isinstance(index, int) else call_id or self._last_tool
        self._last_tool = key
        known = self._tools.get(key)
        if known is None or (call_id and known[0] and call_id != known[0]):
            ctx = self._ctx
            tool = ctx.tools.restore(name)
            minted = call_id or ctx.new_id(CALL_ID_PREFIX)
            item_id = ctx.new_id(tool_item_prefix(tool.kind))
            item = StreamedToolCall(self._out, self._next_index(), item_id, minted, tool)
            self._tools[key] = (call_id, item)
            self._items.append(item)
        else:
            item = known[1]
        if arguments:
            item.add(self._out, arguments)

    def _next_index(self) -> int:
        """A new item ends the open reasoning or message item and takes the next output index."""
        item = self._open
        if item is not None:
            if type(item) is StreamedMessage:
                item.followed = True
            item.close(self._out, "completed")
            self._open = None
        return len(self._items)

    def _terminate(self, outcome: Outcome, status: ResponseStatus | None = None) -> None:
        """The terminal event, and the stream's result: its response (with `status` instead of
        the outcome's, if given), usage and error."""
        output = [item.final(outcome.item_status) for item in self._items]
        usage = usage_to_responses(self._usage) if self._usage else None
        response = response_object(
            self._ctx, outcome, output, model=self._model, usage=usage, completed_at=self._clock()
        )
        if status is not None:
            response["status"] = status
        self.response, self.usage = response, usage
        error = outcome.error
        if error is None:
            self.phase = StreamPhase.FINISHED
        else:
            self.phase = StreamPhase.FAILED
            self.error = StreamError(error["message"], error["code"])
        self._out.emit({"type": _TERMINAL_EVENTS[outcome.status], "response": response})
