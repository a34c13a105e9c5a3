"""The Responses request body, decoded and validated once at the edge with msgspec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from diglot.translators.decoding import (
    Int64,
    Penalty,
    PositiveInt,
    Probability,
    Temperature,
    TopLogprobs,
    json_object,
    validation_error,
)
from diglot.translators.errors import RequestError, invalid_type, missing_parameter
from diglot.translators.responses_shapes import ItemStatus


class _Part(msgspec.Struct, tag_field="type", kw_only=True):
    """A content part; `type` tells which."""


class InputText(_Part, tag="input_text"):
    text: str


class InputImage(_Part, tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class InputFile(_Part, tag="input_file"):
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class AudioData(msgspec.Struct):
    data: str
    format: Literal["mp3", "wav"]


class InputAudio(_Part, tag="input_audio"):
    input_audio: AudioData


class OutputText(_Part, tag="output_text"):
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(_Part, tag="refusal"):
    refusal: str


ContentPart = InputText | InputImage | InputFile | InputAudio | OutputText | Refusal
ToolOutputPart = InputText | InputImage | InputFile


class _Item(msgspec.Struct, kw_only=True, tag_field="type"):
    """An input item; its `type` chose the class, `id` and `status` are the client's echo."""

    id: str | None = None
    status: ItemStatus | None = None


class MessageItem(_Item, tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Item, tag="function_call"):
    call_id: str
    name: str
    arguments: str
    namespace: str | None = None


class FunctionCallOutputItem(_Item, tag="function_call_output"):
    call_id: str
    output: str | list[ToolOutputPart]
    name: str | None = None
    namespace: str | None = None


class CustomToolCallItem(_Item, tag="custom_tool_call"):
    call_id: str
    name: str
    input: str
    namespace: str | None = None


class CustomToolCallOutputItem(_Item, tag="custom_tool_call_output"):
    call_id: str
    output: str | list[ToolOutputPart]


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(msgspec.Struct, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(_Item, tag="reasoning"):
    summary: list[SummaryText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


class CompactionItem(_Item, tag="compaction"):
    """The conversation before it, compacted: a summary the proxy sealed (see
    `translators.compaction`)."""

    encrypted_content: str
    created_by: str | None = None


class CompactionTriggerItem(_Item, tag="compaction_trigger"):
    """Asks for the conversation so far compacted, as the response's only output item."""


@dataclass(frozen=True, slots=True)
class UnsupportedItem:
    """A known item (a hosted tool's call or output) a Chat upstream cannot take."""

    type: str


@dataclass(frozen=True, slots=True)
class ItemReference:
    """An `item_reference`: a stored item the proxy puts in its place before translating."""

    id: str


_TypedItem = (  # the items whose `type` picks their class
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | ReasoningItem
    | CompactionItem
    | CompactionTriggerItem
)
InputItem = _TypedItem | UnsupportedItem | ItemReference

_ITEM_CLASSES: dict[str, type[_Item]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "custom_tool_call": CustomToolCallItem,
    "custom_tool_call_output": CustomToolCallOutputItem,
    "reasoning": ReasoningItem,
    "compaction": CompactionItem,
    "compaction_trigger": CompactionTriggerItem,
}
_UNSUPPORTED_ITEMS = frozenset(
    {
        "additional_tools",
        "apply_patch_call",
        "apply_patch_call_output",
        "code_interpreter_call",
        "computer_call",
        "computer_call_output",
        "configuration_update",
        "file_search_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "mcp_list_tools",
        "program",
        "program_output",
        "shell_call",
        "shell_call_output",
        "tool_search_call",
        "tool_search_output",
        "web_search_call",
    }
)


class FunctionTool(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Grammar(msgspec.Struct, kw_only=True):
    type: Literal["text", "grammar"]
    syntax: Literal["lark", "regex"] | None = None
    definition: str | None = None


class CustomTool(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    format: Grammar | None = None


class NamespaceTool(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    tools: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HostedTool:
    """A tool the Responses API runs itself (web_search, file_search, mcp, …)."""

    type: str


@dataclass(frozen=True, slots=True)
class Namespace:
    """A `namespace` tool group with its member tools decoded."""

    name: str
    description: str | None
    tools: list[FunctionTool | CustomTool]


Tool = FunctionTool | CustomTool | Namespace | HostedTool


class Reasoning(msgspec.Struct, kw_only=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_schema", "json_object"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Params(msgspec.Struct, kw_only=True):
    """Every top-level Responses field except `input`; `None` where the client gave none."""

    model: str
    stream: bool | None = None
    instructions: str | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: PositiveInt | None = None
    max_tool_calls: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    top_logprobs: TopLogprobs | None = None
    seed: Int64 | None = None
    stop: str | list[str] | None = None
    include: list[str] | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    store: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    stream_options: dict[str, Any] | None = None
    client_metadata: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    context_management: list[Any] | None = None
    moderation: dict[str, Any] | None = None
    access_programs: dict[str, Any] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None


PARAM_NAMES = frozenset(Params.__struct_fields__) | {"input", "tools"}


class _Body(Params, forbid_unknown_fields=True):
    """The common case decoded in one pass: typed items, no extras (else the general path)."""

    input: str | list[_TypedItem]
    tools: msgspec.Raw = msgspec.Raw()  # decoded apart, so that its bytes can find it shelved


class DeclaredTools(msgspec.Struct):
    """A request's `tools`: as sent (what a response echoes) and decoded.

    Requests sending the same bytes share one (see ToolShelf), so it is read-only, except
    `memo`, where a translation keeps what it derived from these tools.
    """

    given: list[dict[str, Any]]
    decoded: list[Tool]
    memo: dict[str, Any] = {}


_LARGEST_SHELVED = 64 * 1024  # with 32 kept, a few tens of MB at most once decoded


class ToolShelf:
    """Recently declared tools by the exact bytes they came as.

    Agents send the same tools every turn; decoding and translating them again would be most of
    a small turn's cost. Least recently used tools leave first.
    """

    __slots__ = ("_kept", "_size")

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._kept: dict[bytes, DeclaredTools] = {}

    def get(self, raw: bytes) -> DeclaredTools | None:
        found = self._kept.pop(raw, None)
        if found is not None:
            self._kept[raw] = found
        return found

    def put(self, raw: bytes, tools: DeclaredTools) -> None:
        if len(raw) > _LARGEST_SHELVED:
            return
        if len(self._kept) >= self._size:
            del self._kept[next(iter(self._kept))]
        self._kept[raw] = tools


@dataclass(slots=True)
class ResponsesRequest:
    """A validated Responses request: its settings, its input, and keys neither API defines."""

    params: Params
    input: str | Sequence[InputItem]
    tools: DeclaredTools
    extras: dict[str, Any]

    @property
    def model(self) -> str:
        return self.params.model

    @property
    def stream(self) -> bool:
        return bool(self.params.stream)


class _Tools(msgspec.Struct):
    tools: list[dict[str, Any]] | None = None


_BODY = msgspec.json.Decoder(_Body)
_TOOL_LIST = msgspec.json.Decoder(list[dict[str, Any]] | None)


def decode_responses_request(raw: bytes, shelf: ToolShelf | None = None) -> ResponsesRequest:
    """Parses and validates a `POST /v1/responses` body; any fault is a RequestError.

    Tools found on `shelf` are not decoded again; new ones are put there.
    """
    try:
        body = _BODY.decode(raw)
        tools = _shelved_tools(bytes(body.tools) or b"null", shelf)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _decode_generally(raw)
    return ResponsesRequest(body, body.input, tools, {})


def _shelved_tools(raw: bytes, shelf: ToolShelf | None) -> DeclaredTools:
    """Raises msgspec's errors when the tools are no list of objects (the general path says why)."""
    found = shelf.get(raw) if shelf is not None else None
    if found is None:
        found = _declared(_TOOL_LIST.decode(raw))
        if shelf is not None:
            shelf.put(raw, found)
    return found


def _declared(given: list[dict[str, Any]] | None) -> DeclaredTools:
    try:
        return DeclaredTools(given or [], _tools(given))
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), "") from None


def _decode_generally(raw: bytes) -> ResponsesRequest:
    """Any body: type-less messages, hosted-tool items, extra keys, and precise errors."""
    data = json_object(raw)
    try:
        params = msgspec.convert(data, Params)
        if "input" not in data:
            raise missing_parameter("input")
        items = _input(data["input"])
        given = msgspec.convert(data, _Tools).tools
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), "") from None
    tools = _declared(given)
    extras = {key: value for key, value in data.items() if key not in PARAM_NAMES}
    return ResponsesRequest(params, items, tools, extras)


def _input(value: object) -> str | list[InputItem]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items")
    return [_item(item, index) for index, item in enumerate(value)]


def decode_items(items: list[Any]) -> list[InputItem]:
    """Stored items (as JSON values) decoded as the input items they were or became."""
    return [_item(item, index) for index, item in enumerate(items)]


def _item(item: object, index: int) -> InputItem:
    path = f"input[{index}]"
    if not isinstance(item, dict):
        raise invalid_type(path, "an object")
    kind = item.get("type")
    if kind is None:
        kind = "message" if "role" in item else "item_reference" if "id" in item else None
    if kind == "item_reference":
        reference = item.get("id")
        if not isinstance(reference, str):
            raise invalid_type(f"{path}.id", "a string")
        return ItemReference(reference)
    cls = _ITEM_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        if isinstance(kind, str) and kind in _UNSUPPORTED_ITEMS:
            return UnsupportedItem(kind)
        raise RequestError(
            f"Invalid value for '{path}.type': {kind!r} is not a supported input item type.",
            f"{path}.type",
            "invalid_value",
        )
    try:
        return msgspec.convert(item, cls)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), path) from None


def _tools(tools: list[dict[str, Any]] | None) -> list[Tool]:
    if not tools:
        return []
    return [_tool(tool, "tools", index) for index, tool in enumerate(tools)]


HOSTED_TOOL_TYPES = frozenset(
    {
        "file_search",
        "computer",
        "computer_use_preview",
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "mcp",
        "code_interpreter",
        "programmatic_tool_calling",
        "image_generation",
        "local_shell",
        "shell",
        "tool_search",
        "apply_patch",
    }
)


def _tool(tool: dict[str, Any], within: str, index: int) -> Tool:
    """`within[index]` names the tool in errors, built only when there is one."""
    kind = tool.get("type")
    try:
        if kind == "function":
            nested = tool.get("function")
            if "name" not in tool and isinstance(nested, dict):
                return msgspec.convert(nested, FunctionTool)
            return msgspec.convert(tool, FunctionTool)
        if kind == "custom":
            return msgspec.convert(tool, CustomTool)
        if kind == "namespace":
            group = msgspec.convert(tool, NamespaceTool)
            members = [
                _member(member, f"{within}[{index}].tools", position)
                for position, member in enumerate(group.tools)
            ]
            return Namespace(group.name, group.description, members)
    except msgspec.ValidationError as exc:
        path = f"{within}[{index}]"
        nested_shape = "name" not in tool and isinstance(tool.get("function"), dict)
        suffix = ".function" if kind == "function" and nested_shape else ""
        raise validation_error(str(exc), path + suffix) from None
    if isinstance(kind, str) and kind in HOSTED_TOOL_TYPES:
        return HostedTool(kind)
    path = f"{within}[{index}].type"
    if kind is None:
        raise missing_parameter(path)
    if not isinstance(kind, str):
        raise invalid_type(path, "a string")
    raise RequestError(f"Invalid value for '{path}': '{kind}'.", path)


def _member(tool: dict[str, Any], within: str, index: int) -> FunctionTool | CustomTool:
    member = _tool(tool, within, index)
    if isinstance(member, FunctionTool | CustomTool):
        return member
    path = f"{within}[{index}]"
    raise RequestError(
        f"Invalid value for '{path}.type': a namespace holds only function and custom tools.",
        f"{path}.type",
    )
