"""Chat Completions request bodies as Responses requests, and what their answer needs back."""

from __future__ import annotations

from typing import Any

import msgspec

from diglot.translators.chat_models import (
    AssistantMessage,
    ChatParams,
    ChatRequest,
    CustomToolCall,
    FunctionMessage,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from diglot.translators.content import (
    message_item,
    responses_assistant_parts,
    responses_part,
    responses_text,
)
from diglot.translators.context import (
    ChatContext,
    Dropped,
    IdFactory,
    Options,
    pass_extras,
    random_id,
    refuse_if_strict,
)
from diglot.translators.errors import RequestError
from diglot.translators.reasoning import reasoning_item
from diglot.translators.tools import (
    function_call_input_item,
    responses_tool_call_item,
    responses_tool_choice,
    responses_tools,
    tool_output_item,
    web_search_tool,
)

_LOGPROBS = "message.output_text.logprobs"
_PASSED = (
    "temperature",
    "top_p",
    "seed",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_options",
    "metadata",
    "moderation",
    "service_tier",
)
_CHAT_ONLY = {
    "stop": "Responses has no stop sequences",
    "logit_bias": "Responses takes no token biases",
    "frequency_penalty": "Responses takes no frequency penalty",
    "presence_penalty": "Responses takes no presence penalty",
    "audio": "Responses gives no audio output",
    "modalities": "Responses gives no audio output",
    "prediction": "Responses takes no predicted output",
}
_NAME_REASON = "Responses message items carry no participant name"


class ResponsesCall(msgspec.Struct):
    """What the proxy sends upstream (`n` times) and keeps for the way back."""

    body: dict[str, Any]
    context: ChatContext
    dropped: list[Dropped]
    n: int


def chat_request_to_responses(
    req: ChatRequest, options: Options, *, now: int, new_id: IdFactory = random_id
) -> ResponsesCall:
    """Maps, consumes, passes on or drops every field of a validated Chat request."""
    params = req.params
    dropped: list[Dropped] = []
    messages = params.messages
    body: dict[str, Any] = {"model": params.model}
    start = 0
    if options.hoist_system and isinstance(messages[0], SystemMessage):
        body["instructions"] = _instructions(messages[0], dropped)
        start = 1
    body["input"] = _Input(options, dropped, new_id).build(messages, start)
    tools = responses_tools(params.tools, params.functions)
    if params.web_search_options is not None:
        tools.append(web_search_tool(params.web_search_options))
    if tools:
        body["tools"] = tools
    choice = responses_tool_choice(params.tool_choice, params.function_call, tools)
    if choice is not None:
        body["tool_choice"] = choice
    if params.tool_choice is not None and params.function_call is not None:
        dropped.append(Dropped("function_call", "'tool_choice' replaces it"))
    include_logprobs = _settings(params, options, body, dropped)
    extras = req.extras
    if extras.get("background"):
        extras = {key: value for key, value in extras.items() if key != "background"}
        dropped.append(Dropped("background", "a chat completion cannot wait for one"))
    pass_extras(extras, body, dropped, "diglot sets this Responses field itself")
    refuse_if_strict(options, dropped)
    context = ChatContext(
        completion_id=_completion_id(new_id),
        created=now,
        model=params.model,
        options=options,
        include_usage=bool(params.stream_options and params.stream_options.include_usage),
        include_logprobs=include_logprobs,
        new_id=new_id,
    )
    return ResponsesCall(body, context, dropped, params.n or 1)


def _completion_id(new_id: IdFactory) -> str:
    """OpenAI's `chatcmpl-…` form: a hyphen where other ids have an underscore."""
    return "chatcmpl-" + new_id("chatcmpl").removeprefix("chatcmpl_")


def _instructions(message: SystemMessage, dropped: list[Dropped]) -> str:
    """A leading system or developer message hoisted into `instructions`."""
    if message.name is not None:
        dropped.append(Dropped("messages[0].name", _NAME_REASON))
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


def _settings(
    params: ChatParams, options: Options, body: dict[str, Any], dropped: list[Dropped]
) -> bool:
    """Sampling, limits, output format and identity fields; True when logprobs were asked for."""
    for field in _PASSED:
        value = getattr(params, field)
        if value is not None:
            body[field] = value
    if params.prompt_cache_retention is not None:
        body["prompt_cache_retention"] = params.prompt_cache_retention.replace("-", "_")
    limit = params.max_completion_tokens
    if limit is not None and params.max_tokens is not None:
        dropped.append(Dropped("max_tokens", "'max_completion_tokens' replaces it"))
    limit = params.max_tokens if limit is None else limit
    if limit is not None:
        body["max_output_tokens"] = limit
    if params.reasoning_effort is not None:
        body["reasoning"] = {"effort": params.reasoning_effort}
    text = _text(params)
    if text:
        body["text"] = text
    include_logprobs = bool(params.logprobs)
    if include_logprobs:
        body["include"] = [_LOGPROBS]
    if params.top_logprobs is not None:
        body["top_logprobs"] = params.top_logprobs
    if params.stream:
        body["stream"] = True
        obfuscation = params.stream_options and params.stream_options.include_obfuscation
        if obfuscation is not None:
            body["stream_options"] = {"include_obfuscation": obfuscation}
    body["store"] = bool(params.store)
    _chat_only(params, options, body, dropped)
    return include_logprobs


def _text(params: ChatParams) -> dict[str, Any]:
    """`response_format` and `verbosity` as the `text` config (json_schema flattened)."""
    text: dict[str, Any] = {}
    fmt = params.response_format
    if isinstance(fmt, JSONSchemaFormat):
        spec = fmt.json_schema
        if spec.schema is None:
            raise RequestError(
                "Missing required parameter: 'response_format.json_schema.schema'.",
                "response_format.json_schema.schema",
                "missing_required_parameter",
            )
        text["format"] = {"type": "json_schema", "name": spec.name, "schema": spec.schema}
        if spec.description is not None:
            text["format"]["description"] = spec.description
        if spec.strict is not None:
            text["format"]["strict"] = spec.strict
    elif isinstance(fmt, JSONObjectFormat):
        text["format"] = {"type": "json_object"}
    elif fmt is not None:
        text["format"] = {"type": "text"}
    if params.verbosity is not None:
        text["verbosity"] = params.verbosity
    return text


def _chat_only(
    params: ChatParams, options: Options, body: dict[str, Any], dropped: list[Dropped]
) -> None:
    """Fields Responses has no twin for: forwarded as given when configured, else dropped."""
    for field, reason in _CHAT_ONLY.items():
        value = getattr(params, field)
        if value is None or (field == "modalities" and "audio" not in value):
            continue
        if options.forward_chat_only_params:
            body[field] = value
        else:
            dropped.append(Dropped(field, reason))


class _Input:
    """Chat messages -> Responses input items; knows which calls were custom or legacy."""

    __slots__ = ("_custom_calls", "_dropped", "_items", "_legacy_calls", "_new_id", "_options")

    def __init__(self, options: Options, dropped: list[Dropped], new_id: IdFactory) -> None:
        self._options = options
        self._dropped = dropped
        self._new_id = new_id
        self._items: list[dict[str, Any]] = []
        self._custom_calls: set[str] = set()
        self._legacy_calls: dict[str, list[str]] = {}

    def build(self, messages: list[Message], start: int) -> list[dict[str, Any]]:
        """Items for `messages[start:]` (the first may have become `instructions`)."""
        for index in range(start, len(messages)):
            self._message(messages[index], index)
        return self._items

    def _message(self, message: Message, index: int) -> None:
        if isinstance(message, SystemMessage):
            item = _message_item(message.role, responses_text(message.content))
            self._items.append(item)
            self._name(message.name, item, index)
        elif isinstance(message, UserMessage):
            content = message.content
            parts = content if isinstance(content, str) else [responses_part(p) for p in content]
            item = _message_item("user", parts)
            self._items.append(item)
            self._name(message.name, item, index)
        elif isinstance(message, AssistantMessage):
            self._assistant(message, index)
        elif isinstance(message, ToolMessage):
            output = responses_text(message.content)
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
                reasoning_item(self._new_id("rs"), message.reasoning_content, "text", "completed")
            )
        parts = responses_assistant_parts(message.content, message.refusal)
        item = message_item(self._new_id("msg"), parts, "completed") if parts else None
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
            items.append(responses_tool_call_item(call))
        legacy = message.function_call
        if legacy is not None:
            call_id = self._new_id("call")
            self._legacy_calls.setdefault(legacy.name, []).append(call_id)
            items.append(function_call_input_item(call_id, legacy))

    def _function_result(self, message: FunctionMessage) -> None:
        """A legacy `function` message answers the earliest open call of that function."""
        waiting = self._legacy_calls.get(message.name)
        call_id = waiting.pop(0) if waiting else self._new_id("call")
        self._items.append(tool_output_item(call_id, message.content or "", False))

    def _name(self, name: str | None, item: dict[str, Any] | None, index: int) -> None:
        if name is None:
            return
        if self._options.forward_chat_only_params and item is not None:
            item["name"] = name
        else:
            self._dropped.append(Dropped(f"messages[{index}].name", _NAME_REASON))


def _message_item(role: str, content: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}
