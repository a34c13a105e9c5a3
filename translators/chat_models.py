"""The Chat Completions request body, decoded and validated once at the edge with msgspec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

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
from diglot.translators.errors import RequestError
from diglot.translators.responses_models import AudioData

Choices = Annotated[int, msgspec.Meta(ge=1, le=128)]
Bias = Annotated[int, msgspec.Meta(ge=-100, le=100)]
CallId = Annotated[str, msgspec.Meta(min_length=1)]


class _Part(msgspec.Struct, tag_field="type", kw_only=True):
    """A content part; `type` tells which."""


class TextPart(_Part, tag="text"):
    text: str


class ImageURL(msgspec.Struct, kw_only=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Part, tag="image_url"):
    image_url: ImageURL


class AudioPart(_Part, tag="input_audio"):
    input_audio: AudioData


class FileRef(msgspec.Struct, kw_only=True, omit_defaults=True):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Part, tag="file"):
    file: FileRef


class RefusalPart(_Part, tag="refusal"):
    refusal: str


UserPart = TextPart | ImagePart | AudioPart | FilePart


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str


class CustomCall(msgspec.Struct, kw_only=True):
    name: str
    input: str


class _ToolCall(msgspec.Struct, tag_field="type", kw_only=True):
    id: CallId


class FunctionToolCall(_ToolCall, tag="function"):
    function: FunctionCall


class CustomToolCall(_ToolCall, tag="custom"):
    custom: CustomCall


class AudioRef(msgspec.Struct):
    id: str


class _Message(msgspec.Struct, tag_field="role", kw_only=True):
    """A message; its `role` chose the class."""


class SystemMessage(_Message, tag="system"):
    content: str | list[TextPart]
    name: str | None = None

    @property
    def role(self) -> Literal["system", "developer"]:
        return "system"


class DeveloperMessage(SystemMessage, tag="developer"):
    @property
    def role(self) -> Literal["system", "developer"]:
        return "developer"


class UserMessage(_Message, tag="user"):
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(_Message, tag="assistant"):
    content: str | list[TextPart | RefusalPart] | None = None
    refusal: str | None = None
    tool_calls: list[FunctionToolCall | CustomToolCall] | None = None
    function_call: FunctionCall | None = None
    reasoning_content: str | None = None
    audio: AudioRef | None = None
    name: str | None = None


class ToolMessage(_Message, tag="tool"):
    content: str | list[TextPart]
    tool_call_id: CallId


class FunctionMessage(_Message, tag="function"):
    content: str | None
    name: str


Message = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)


class FunctionDefinition(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(msgspec.Struct, tag_field="type", kw_only=True):
    """A tool; `type` tells which."""


class ChatFunctionTool(_Tool, tag="function"):
    function: FunctionDefinition


class _Format(msgspec.Struct, tag_field="type", kw_only=True):
    """A custom tool's input format."""


class TextInput(_Format, tag="text"):
    pass


class GrammarDefinition(msgspec.Struct, kw_only=True):
    definition: str
    syntax: Literal["lark", "regex"]


class GrammarInput(_Format, tag="grammar"):
    grammar: GrammarDefinition


class CustomDefinition(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    format: TextInput | GrammarInput | None = None


class ChatCustomTool(_Tool, tag="custom"):
    custom: CustomDefinition


class ToolName(msgspec.Struct):
    name: str


class _Choice(msgspec.Struct, tag_field="type", kw_only=True):
    """A tool choice object; `type` tells which."""


class FunctionChoice(_Choice, tag="function"):
    function: ToolName


class CustomChoice(_Choice, tag="custom"):
    custom: ToolName


class AllowedTools(msgspec.Struct, kw_only=True):
    mode: Literal["auto", "required"]
    tools: list[FunctionChoice | CustomChoice]


class AllowedToolsChoice(_Choice, tag="allowed_tools"):
    allowed_tools: AllowedTools


ToolChoice = (
    Literal["none", "auto", "required"] | FunctionChoice | CustomChoice | AllowedToolsChoice
)


class _ResponseFormat(msgspec.Struct, tag_field="type", kw_only=True):
    """The output format; `type` tells which."""


class ChatTextFormat(_ResponseFormat, tag="text"):
    pass


class JSONObjectFormat(_ResponseFormat, tag="json_object"):
    pass


class JSONSchema(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class JSONSchemaFormat(_ResponseFormat, tag="json_schema"):
    json_schema: JSONSchema


class Approximate(msgspec.Struct, kw_only=True, omit_defaults=True):
    city: str | None = None
    country: str | None = None
    region: str | None = None
    timezone: str | None = None


class UserLocation(msgspec.Struct, kw_only=True):
    type: Literal["approximate"]
    approximate: Approximate


class WebSearchOptions(msgspec.Struct, kw_only=True):
    search_context_size: Literal["low", "medium", "high"] | None = None
    user_location: UserLocation | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatParams(msgspec.Struct, kw_only=True):
    """Every Chat Completions field; `None` where the client gave none."""

    model: str
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[ChatFunctionTool | ChatCustomTool] | None = None
    tool_choice: ToolChoice | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | ToolName | None = None
    parallel_tool_calls: bool | None = None
    max_completion_tokens: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n: Choices | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    seed: Int64 | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    response_format: ChatTextFormat | JSONObjectFormat | JSONSchemaFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    web_search_options: WebSearchOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "in-memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    service_tier: str | None = None
    store: bool | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, Bias] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    audio: dict[str, Any] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    prediction: dict[str, Any] | None = None


PARAM_NAMES = frozenset(ChatParams.__struct_fields__)


class _Body(ChatParams, forbid_unknown_fields=True):
    """The common case decoded in one pass: no extras (else the general path)."""


@dataclass(slots=True)
class ChatRequest:
    """A validated Chat Completions request and the keys neither API defines."""

    params: ChatParams
    extras: dict[str, Any]

    @property
    def model(self) -> str:
        return self.params.model

    @property
    def stream(self) -> bool:
        return bool(self.params.stream)


def decode_chat_request(raw: bytes) -> ChatRequest:
    """Parses and validates a `POST /v1/chat/completions` body; any fault is a RequestError."""
    try:
        return ChatRequest(msgspec.json.decode(raw, type=_Body), {})
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _decode_generally(raw)


def _decode_generally(raw: bytes) -> ChatRequest:
    """Any body: extra keys kept aside, and precise errors naming the field."""
    data = json_object(raw)
    try:
        params = msgspec.convert(data, ChatParams)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), "") from None
    except RecursionError:
        raise RequestError("The request body is nested too deeply.", None) from None
    extras = {key: value for key, value in data.items() if key not in PARAM_NAMES}
    return ChatRequest(params, extras)
