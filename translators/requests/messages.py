"""The conversation: Responses `instructions` and `input` items <-> Chat `messages`, each way.

How each content part maps is `translators.content`; tool calls, `translators.tools`; reasoning,
`translators.reasoning`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from diglot.translators.chat_models import (
    AssistantMessage,
    CustomToolCall,
    FunctionMessage,
    Message,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from diglot.translators.chat_shapes import ChatCompletionMessageFunctionToolCall
from diglot.translators.compaction import kept_before_compaction, last_compaction, summary_message
from diglot.translators.content import (
    assistant_content_to_chat,
    assistant_content_to_responses,
    chat_content,
    message_item,
    part_to_chat,
    part_to_responses,
    text_content_to_chat,
    text_content_to_responses,
)
from diglot.translators.context import Dropped, Options, Sealing
from diglot.translators.errors import RequestError
from diglot.translators.ids import CALL_ID_PREFIX, ITEM_PREFIXES, IdFactory
from diglot.translators.reasoning import join_reasoning, reasoning_item, reasoning_item_to_chat
from diglot.translators.requests.state import refuse_reference_to_chat
from diglot.translators.responses_models import (
    CompactionItem,
    CompactionTriggerItem,
    ContentPart,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    ItemReference,
    MessageItem,
    Params,
    ReasoningItem,
    ToolOutputPart,
    UnsupportedItem,
)
from diglot.translators.responses_shapes import ResponseOutputMessage
from diglot.translators.tools import (
    ToolNamer,
    chat_tool_call,
    custom_input_to_chat,
    function_call_to_responses,
    history_tool_call_to_responses,
    tool_output_item,
)

_NAME_REASON = "Responses message items carry no participant name"


def input_to_chat(
    params: Params,
    items: str | Sequence[InputItem],
    history: Sequence[InputItem],
    namer: ToolNamer,
    dropped: list[Dropped],
    options: Options,
    sealing: Sealing | None,
) -> list[dict[str, Any]]:
    """`instructions`, then the earlier turns' items (`history`), then this request's input."""
    return _ChatMessages(namer, dropped, options, sealing).build(params, items, history)


def messages_to_responses(
    messages: list[Message],
    options: Options,
    body: dict[str, Any],
    dropped: list[Dropped],
    new_id: IdFactory,
) -> None:
    """`input` items, and `instructions` when a leading system message is to be hoisted."""
    start = 0
    if options.hoist_system and isinstance(messages[0], SystemMessage):
        body["instructions"] = _instructions(messages[0], dropped)
        start = 1
    body["input"] = _ResponsesItems(options, dropped, new_id).build(messages, start)


class _ChatMessages:
    """Input items -> Chat messages; one owner for the open assistant turn and pending reasoning."""

    __slots__ = (
        "_assistant",
        "_dropped",
        "_media",
        "_messages",
        "_namer",
        "_options",
        "_sealing",
        "_thought",
    )

    def __init__(
        self, namer: ToolNamer, dropped: list[Dropped], options: Options, sealing: Sealing | None
    ) -> None:
        self._namer = namer
        self._sealing = sealing
        self._dropped = dropped
        self._options = options
        self._messages: list[dict[str, Any]] = []
        self._assistant: dict[str, Any] | None = None
        self._thought: list[tuple[int, str]] = []
        self._media: list[dict[str, Any]] = []

    def build(
        self, params: Params, items: str | Sequence[InputItem], history: Sequence[InputItem]
    ) -> list[dict[str, Any]]:
        """Earlier turns' items (negative indexes) first, then this request's input."""
        messages = self._messages
        if params.instructions is not None:
            messages.append(
                {"role": self._options.instructions_role, "content": params.instructions}
            )
        if isinstance(items, str) and not history:
            messages.append({"role": "user", "content": items})
            return messages
        new = [MessageItem(role="user", content=items)] if isinstance(items, str) else items
        conversation = [*history, *new] if history else new
        first = -len(history)
        cut = last_compaction(conversation)
        if cut >= 0:
            self._compacted(conversation[: cut + 1], first)
            conversation, first = conversation[cut + 1 :], first + cut + 1
        for index, item in enumerate(conversation, first):
            if type(item) is FunctionCallOutputItem or type(item) is CustomToolCallOutputItem:
                self._tool_output(item.call_id, item.output, index)
                continue
            if self._media:
                self._flush_media()
            if type(item) is MessageItem:
                self._message(item, index)
            elif type(item) is FunctionCallItem:
                self._function_call(item)
            elif type(item) is CustomToolCallItem:
                self._custom_tool_call(item)
            elif type(item) is ReasoningItem:
                text = self._reasoning_text(item, index)
                if text:
                    self._thought.append((index, text))
            elif type(item) is UnsupportedItem:
                self._unsupported(item, index)
            elif type(item) is CompactionTriggerItem:
                pass  # no message: the proxy answers it with the compaction it asks for
            elif type(item) is ItemReference:
                refuse_reference_to_chat(index)
        self._flush_media()
        if self._thought:
            self._orphan_reasoning()
        return messages

    def _compacted(self, items: Sequence[InputItem], first: int) -> None:
        """The conversation up to its latest compaction item: the messages kept beside it, then
        its summary in place of everything else (see `translators.compaction`)."""
        *before, compaction = items
        for index, item in enumerate(before, first):
            if kept_before_compaction(item):
                self._message(item, index)
        assert type(compaction) is CompactionItem
        index = first + len(before)
        summary = self._opened(compaction.encrypted_content, index, "compaction")
        self._messages.append(summary_message(summary))
        self._assistant = None

    def _message(self, item: MessageItem, index: int) -> None:
        if item.role == "assistant":
            message = assistant_content_to_chat(item.content, index)
            self._take_reasoning(message)
            self._messages.append(message)
            self._assistant = message
            return
        if self._thought:
            self._orphan_reasoning()
        self._assistant = None
        given = item.content
        content: str | list[dict[str, Any]]
        if item.role == "user":
            content = given if isinstance(given, str) else self._user_content(given, index)
            self._messages.append({"role": "user", "content": content})
            return
        role = self._options.instructions_role if item.role == "developer" else "system"
        content = given if isinstance(given, str) else text_content_to_chat(given, index)
        self._messages.append({"role": role, "content": content})

    def _user_content(self, content: list[ContentPart], index: int) -> str | list[dict[str, Any]]:
        path = f"input[{index}].content"
        parts = []
        for position, part in enumerate(content):
            mapped = part_to_chat(part, path, position, self._dropped)
            if mapped is not None:
                parts.append(mapped)
        return chat_content(parts) if parts else ""

    def _function_call(self, item: FunctionCallItem) -> None:
        name = self._namer.name("function", item.name, item.namespace)
        self._tool_call(chat_tool_call(item.call_id, name, item.arguments))

    def _custom_tool_call(self, item: CustomToolCallItem) -> None:
        name = self._namer.name("custom", item.name, item.namespace)
        self._tool_call(chat_tool_call(item.call_id, name, custom_input_to_chat(item.input)))

    def _tool_call(self, call: ChatCompletionMessageFunctionToolCall) -> None:
        message = self._assistant
        if message is None:
            message = {"role": "assistant", "content": None}
            self._messages.append(message)
            self._assistant = message
        self._take_reasoning(message)
        message.setdefault("tool_calls", []).append(call)

    def _tool_output(self, call_id: str, output: str | list[ToolOutputPart], index: int) -> None:
        self._assistant = None
        if self._thought:
            self._orphan_reasoning()
        if isinstance(output, str):
            content: str | list[dict[str, Any]] = output
        else:
            texts: list[dict[str, Any]] = []
            for position, part in enumerate(output):
                mapped = part_to_chat(part, f"input[{index}].output", position, self._dropped)
                if mapped is None:
                    continue
                (texts if mapped["type"] == "text" else self._media).append(mapped)
            content = chat_content(texts) if texts else ""
        self._messages.append({"role": "tool", "tool_call_id": call_id, "content": content})

    def _flush_media(self) -> None:
        """Chat tool results hold text only: their images and files follow as a user turn."""
        if self._media:
            self._messages.append({"role": "user", "content": self._media})
            self._media = []

    def _take_reasoning(self, message: dict[str, Any]) -> None:
        if not self._thought:
            return
        texts = [text for _, text in self._thought]
        self._thought.clear()
        message["reasoning_content"] = join_reasoning(message.get("reasoning_content"), texts)

    def _orphan_reasoning(self) -> None:
        """Reasoning with no assistant turn after it cannot be sent back to a Chat upstream."""
        for index, _ in self._thought:
            self._dropped.append(
                Dropped(f"input[{index}]", "reasoning not followed by an assistant turn")
            )
        self._thought.clear()

    def _reasoning_text(self, item: ReasoningItem, index: int) -> str:
        """What a sealed `encrypted_content` holds (the backend's own words), else readable text.

        The blob is opened even beside readable text, so an altered one is never accepted.
        """
        if item.encrypted_content is None or self._sealing is None:
            return reasoning_item_to_chat(item)
        return self._opened(item.encrypted_content, index, "reasoning")

    def _opened(self, blob: str, index: int, what: str) -> str:
        """A sealed `encrypted_content`'s text; one this server did not seal for this caller
        (altered, cut short, another key or tenant) is a 400 naming it."""
        sealing = self._sealing
        if sealing is not None:
            with contextlib.suppress(ValueError):
                return sealing.open(blob)
        path = f"input[{index}].encrypted_content"
        raise RequestError(
            f"Invalid value for '{path}': the {what} cannot be opened; it was altered, "
            "cut short or sealed by another server.",
            path,
            "invalid_encrypted_content",
        )

    def _unsupported(self, item: UnsupportedItem, index: int) -> None:
        self._assistant = None
        self._dropped.append(
            Dropped(f"input[{index}]", f"'{item.type}' items cannot be replayed to a Chat upstream")
        )


def _instructions(message: SystemMessage, dropped: list[Dropped]) -> str:
    """A leading system or developer message hoisted into `instructions`."""
    if message.name is not None:
        dropped.append(Dropped("messages[0].name", _NAME_REASON))
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


class _ResponsesItems:
    """Chat messages -> Responses input items; knows which calls were custom or legacy."""

    __slots__ = ("_custom_calls", "_dropped", "_items", "_legacy_calls", "_new_id", "_options")

    def __init__(self, options: Options, dropped: list[Dropped], new_id: IdFactory) -> None:
        self._options = options
        self._dropped = dropped
        self._new_id = new_id
        self._items: list[Mapping[str, Any]] = []
        self._custom_calls: set[str] = set()
        self._legacy_calls: dict[str, list[str]] = {}

    def build(self, messages: list[Message], start: int) -> list[Mapping[str, Any]]:
        """Items for `messages[start:]` (the first may have become `instructions`)."""
        for index in range(start, len(messages)):
            self._message(messages[index], index)
        return self._items

    def _message(self, message: Message, index: int) -> None:
        if isinstance(message, SystemMessage):
            item = _message_item(message.role, text_content_to_responses(message.content))
            self._items.append(item)
            self._name(message.name, item, index)
        elif isinstance(message, UserMessage):
            content = message.content
            parts = content if isinstance(content, str) else [part_to_responses(p) for p in content]
            item = _message_item("user", parts)
            self._items.append(item)
            self._name(message.name, item, index)
        elif isinstance(message, AssistantMessage):
            self._assistant(message, index)
        elif isinstance(message, ToolMessage):
            output = text_content_to_responses(message.content)
            custom = message.tool_call_id in self._custom_calls
            self._items.append(tool_output_item(message.tool_call_id, output, custom))
        else:
            self._function_result(message)

    def _assistant(self, message: AssistantMessage, index: int) -> None:
        """Reasoning, then text and refusal, then the calls, as Responses orders its output.

        Replayed reasoning and message items get fresh ids and a status: the API's input types
        for model output ask for both.
        """
        items = self._items
        if message.reasoning_content:
            items.append(
                reasoning_item(
                    self._new_id(ITEM_PREFIXES["reasoning"]),
                    message.reasoning_content,
                    "text",
                    "completed",
                )
            )
        parts = assistant_content_to_responses(message.content, message.refusal)
        item = (
            message_item(self._new_id(ITEM_PREFIXES["message"]), parts, "completed")
            if parts
            else None
        )
        if item is not None:
            items.append(item)
        self._name(message.name, item, index)
        if message.audio is not None:
            self._dropped.append(
                Dropped(f"messages[{index}].audio", "Responses cannot replay an audio answer")
            )
        for call in message.tool_calls or ():
            if isinstance(call, CustomToolCall):
                self._custom_calls.add(call.id)
            items.append(history_tool_call_to_responses(call))
        legacy = message.function_call
        if legacy is not None:
            call_id = self._new_id(CALL_ID_PREFIX)
            self._legacy_calls.setdefault(legacy.name, []).append(call_id)
            items.append(function_call_to_responses(call_id, legacy))

    def _function_result(self, message: FunctionMessage) -> None:
        """A legacy `function` message answers the earliest open call of that function."""
        waiting = self._legacy_calls.get(message.name)
        call_id = waiting.pop(0) if waiting else self._new_id(CALL_ID_PREFIX)
        self._items.append(tool_output_item(call_id, message.content or "", False))

    def _name(
        self, name: str | None, item: dict[str, Any] | ResponseOutputMessage | None, index: int
    ) -> None:
        if name is None:
            return
        if self._options.forward_chat_only_params and item is not None:
            item["name"] = name
        else:
            self._dropped.append(Dropped(f"messages[{index}].name", _NAME_REASON))


def _message_item(role: str, content: str | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}
