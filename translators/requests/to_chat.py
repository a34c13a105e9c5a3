"""Responses request bodies as Chat Completions requests, and what their answer needs back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import msgspec

from diglot.translators.content import chat_content, chat_part
from diglot.translators.context import (
    Dropped,
    IdFactory,
    Options,
    ResponseContext,
    Sealing,
    pass_extras,
    random_id,
    refuse_if_strict,
)
from diglot.translators.errors import RequestError
from diglot.translators.models import (
    ContentPart,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    DeclaredTools,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    InputText,
    ItemReference,
    MessageItem,
    OutputText,
    Params,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
    TextConfig,
    ToolOutputPart,
    UnsupportedItem,
)
from diglot.translators.reasoning import reasoning_item_text
from diglot.translators.tools import (
    ToolNamer,
    chat_tool_call,
    chat_tool_choice,
    chat_tools,
    custom_call_arguments,
    echoed_tool,
)

_LOGPROBS = "message.output_text.logprobs"
_ENCRYPTED_REASONING = "reasoning.encrypted_content"
_PASSED = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "service_tier",
    "prompt_cache_retention",
)
_NOT_FORWARDED = {
    "max_tool_calls": "a Chat upstream has no limit on tool calls per response",
    "prompt": "stored prompt templates cannot be resolved for a Chat upstream",
    "context_management": "a Chat upstream does not compact context",
    "moderation": "a Chat upstream does not run moderation",
    "access_programs": "a Chat upstream has no access programs",
    "prompt_cache_options": "a Chat upstream takes no prompt cache options",
    "image": "a Chat upstream takes no image context settings",
    "background_options": "background mode is not supported",
}
_STATEFUL = {
    "previous_response_id": "Continuing from 'previous_response_id' needs stored responses, "
    "which this server does not keep yet; send the whole conversation in 'input'.",
    "conversation": "Conversations need stored state, which this server does not keep yet; "
    "send the whole conversation in 'input'.",
}


class ChatCall(msgspec.Struct):
    """What the proxy sends upstream and keeps for the way back."""

    body: dict[str, Any]
    context: ResponseContext
    dropped: list[Dropped]


def responses_request_to_chat(
    req: ResponsesRequest,
    options: Options,
    *,
    now: int,
    new_id: IdFactory = random_id,
    history: Sequence[InputItem] | None = None,
    sealing: Sealing | None = None,
) -> ChatCall:
    """Maps, consumes, passes on or drops every field of a validated Responses request.

    `history` is the conversation `previous_response_id` names, already resolved by the
    caller; `sealing` opens `encrypted_content` reasoning and seals it when asked to.
    """
    params = req.params
    _refuse_stateful(params, history is not None)
    prepared = _chat_form(req.tools)
    dropped = list(prepared.dropped)
    namer = prepared.namer.copy()
    tools = prepared.chat
    choice, allowed = chat_tool_choice(params.tool_choice, namer, dropped)
    if allowed is not None:
        tools = [tool for tool in tools if tool["function"]["name"] in allowed]
    builder = _History(namer, dropped, options, sealing)
    messages = builder.build(params, req.input, history or ())
    body: dict[str, Any] = {"model": params.model, "messages": messages}
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
        if params.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = params.parallel_tool_calls
    include_logprobs = _settings(params, options, body, dropped)
    pass_extras(req.extras, body, dropped, "diglot sets this Chat field itself")
    refuse_if_strict(options, dropped)
    context = ResponseContext(
        response_id=new_id("resp"),
        created_at=now,
        model=params.model,
        echo=_echo(params, prepared.echo),
        tools=namer.names,
        options=options,
        include_logprobs=include_logprobs,
        new_id=new_id,
        seal=sealing.seal if sealing and _ENCRYPTED_REASONING in (params.include or ()) else None,
    )
    return ChatCall(body, context, dropped)


class _ChatTools(msgspec.Struct, frozen=True):
    """Declared tools as a Chat upstream and the response take them: made once per declaration,
    shared by every request that sends the same tools, so never changed."""

    chat: list[dict[str, Any]]
    dropped: tuple[Dropped, ...]
    namer: ToolNamer  # after naming the declared tools; each request goes on from a copy
    echo: list[dict[str, Any]]


def _chat_form(tools: DeclaredTools) -> _ChatTools:
    form: _ChatTools | None = tools.memo.get("chat")
    if form is None:
        namer = ToolNamer()
        dropped: list[Dropped] = []
        chat = chat_tools(tools.decoded, namer, dropped)
        echo = [echoed_tool(tool) for tool in tools.given]
        form = tools.memo["chat"] = _ChatTools(chat, tuple(dropped), namer, echo)
    return form


def _refuse_stateful(params: Params, resolved: bool) -> None:
    for field, message in _STATEFUL.items():
        if field == "previous_response_id" and resolved:
            continue
        if getattr(params, field) is not None:
            raise RequestError(message, field, "unsupported_parameter")
    if params.background:
        raise RequestError(
            "Background responses are not supported yet; omit 'background'.",
            "background",
            "unsupported_parameter",
        )


def _settings(
    params: Params, options: Options, body: dict[str, Any], dropped: list[Dropped]
) -> bool:
    """Sampling, limits, output format and identity fields; True when logprobs were asked for."""
    for field in _PASSED:
        value = getattr(params, field)
        if value is not None:
            body[field] = value
    if params.max_output_tokens is not None:
        body[options.max_tokens_field] = params.max_output_tokens
    include_logprobs = params.include is not None and _LOGPROBS in params.include
    if include_logprobs:
        body["logprobs"] = True
        if params.top_logprobs is not None:
            body["top_logprobs"] = params.top_logprobs
    if params.reasoning is not None and params.reasoning.effort is not None:
        body["reasoning_effort"] = params.reasoning.effort
    if params.text is not None:
        _text(params.text, body)
    if params.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for field, reason in _NOT_FORWARDED.items():
        if getattr(params, field) is not None:
            dropped.append(Dropped(field, reason))
    return include_logprobs


def _text(text: TextConfig, body: dict[str, Any]) -> None:
    """`text.format` -> `response_format`, `text.verbosity` -> `verbosity`."""
    fmt = text.format
    if fmt is not None and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.name is None or fmt.schema is None:
            missing = "name" if fmt.name is None else "schema"
            raise RequestError(
                f"Missing required parameter: 'text.format.{missing}'.",
                f"text.format.{missing}",
                "missing_required_parameter",
            )
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if text.verbosity is not None:
        body["verbosity"] = text.verbosity


def _echo(params: Params, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings a response object repeats back, with the API's defaults filled in."""
    reasoning = params.reasoning
    text: dict[str, Any] = {"format": {"type": "text"}}
    if params.text is not None:
        if params.text.format is not None:
            text["format"] = msgspec.to_builtins(params.text.format)
        if params.text.verbosity is not None:
            text["verbosity"] = params.text.verbosity
    return {
        "instructions": params.instructions,
        "tools": tools,
        "tool_choice": "auto" if params.tool_choice is None else params.tool_choice,
        "parallel_tool_calls": params.parallel_tool_calls is not False,
        "temperature": 1.0 if params.temperature is None else params.temperature,
        "top_p": 1.0 if params.top_p is None else params.top_p,
        "presence_penalty": params.presence_penalty or 0.0,
        "frequency_penalty": params.frequency_penalty or 0.0,
        "top_logprobs": params.top_logprobs or 0,
        "max_output_tokens": params.max_output_tokens,
        "max_tool_calls": params.max_tool_calls,
        "previous_response_id": params.previous_response_id,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "text": text,
        "truncation": params.truncation or "disabled",
        "metadata": params.metadata or {},
        "store": params.store is not False,
        "background": False,
        "service_tier": params.service_tier or "default",
        "safety_identifier": params.safety_identifier,
        "prompt_cache_key": params.prompt_cache_key,
        "prompt_cache_retention": params.prompt_cache_retention,
        "user": params.user,
    }


class _History:
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
        for index, item in enumerate([*history, *new] if history else new, -len(history)):
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
            elif type(item) is ItemReference:
                _refuse_reference(index)
        self._flush_media()
        if self._thought:
            self._orphan_reasoning()
        return messages

    def _message(self, item: MessageItem, index: int) -> None:
        if item.role == "assistant":
            message = self._assistant_message(item, index)
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
        content = given if isinstance(given, str) else _text_only(given, index)
        self._messages.append({"role": role, "content": content})

    def _user_content(self, content: list[ContentPart], index: int) -> str | list[dict[str, Any]]:
        path = f"input[{index}].content"
        parts = []
        for position, part in enumerate(content):
            mapped = chat_part(part, path, position, self._dropped)
            if mapped is not None:
                parts.append(mapped)
        return chat_content(parts) if parts else ""

    def _assistant_message(self, item: MessageItem, index: int) -> dict[str, Any]:
        if isinstance(item.content, str):
            return {"role": "assistant", "content": item.content}
        texts: list[str] = []
        refusals: list[str] = []
        for position, part in enumerate(item.content):
            if isinstance(part, OutputText | InputText):
                texts.append(part.text)
            elif isinstance(part, Refusal):
                refusals.append(part.refusal)
            else:
                path = f"input[{index}].content[{position}]"
                _refuse_part(part.__struct_config__.tag, path, "assistant")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
        if refusals:
            message["refusal"] = "".join(refusals)
        return message

    def _function_call(self, item: FunctionCallItem) -> None:
        name = self._namer.name("function", item.name, item.namespace)
        self._tool_call(chat_tool_call(item.call_id, name, item.arguments))

    def _custom_tool_call(self, item: CustomToolCallItem) -> None:
        name = self._namer.name("custom", item.name, item.namespace)
        self._tool_call(chat_tool_call(item.call_id, name, custom_call_arguments(item.input)))

    def _tool_call(self, call: dict[str, Any]) -> None:
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
                mapped = chat_part(part, f"input[{index}].output", position, self._dropped)
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
        text = "\n\n".join(text for _, text in self._thought)
        self._thought.clear()
        earlier = message.get("reasoning_content")
        message["reasoning_content"] = f"{earlier}\n\n{text}" if earlier else text

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
            return reasoning_item_text(item)
        try:
            return self._sealing.open(item.encrypted_content)
        except ValueError:
            path = f"input[{index}].encrypted_content"
            raise RequestError(
                f"Invalid value for '{path}': the reasoning cannot be opened; it was altered, "
                "cut short or sealed by another server.",
                path,
                "invalid_encrypted_content",
            ) from None

    def _unsupported(self, item: UnsupportedItem, index: int) -> None:
        self._assistant = None
        self._dropped.append(
            Dropped(f"input[{index}]", f"'{item.type}' items cannot be replayed to a Chat upstream")
        )


def _text_only(content: list[ContentPart], index: int) -> str | list[dict[str, Any]]:
    """System and developer messages: Chat takes text parts only."""
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        if not isinstance(part, InputText | OutputText):
            path = f"input[{index}].content[{position}]"
            _refuse_part(part.__struct_config__.tag, path, "system and developer")
        parts.append({"type": "text", "text": part.text})
    return chat_content(parts) if parts else ""


def _refuse_reference(index: int) -> NoReturn:
    raise RequestError(
        "Input items of type 'item_reference' need stored conversation state, which is not "
        "available here; send the referenced item itself.",
        f"input[{index}].id",
        "unsupported_value",
    )


def _refuse_part(kind: object, path: str, roles: str) -> NoReturn:
    raise RequestError(
        f"Invalid value for '{path}.type': Chat Completions takes no {kind!s} parts in "
        f"{roles} messages.",
        f"{path}.type",
    )
