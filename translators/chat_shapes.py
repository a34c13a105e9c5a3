"""The Chat Completions objects the translators build: completions, stream chunks, their
messages, deltas, tool calls and usage (the error chunk is `errors.ErrorBody`).

TypedDicts, so they are plain dicts at run time (nothing is converted or checked) while mypy
rejects a misspelt or missing key. Each is named as the openai SDK names its type.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from diglot.translators.errors import ErrorBody
from diglot.translators.responses_shapes import Logprob

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class Function(TypedDict):
    name: str
    arguments: str


class Custom(TypedDict):
    name: str
    input: str


class ChatCompletionMessageFunctionToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: Function


class ChatCompletionMessageCustomToolCall(TypedDict):
    id: str
    type: Literal["custom"]
    custom: Custom


ChatCompletionMessageToolCall = (
    ChatCompletionMessageFunctionToolCall | ChatCompletionMessageCustomToolCall
)


class URLCitation(TypedDict):
    start_index: int
    end_index: int
    url: str
    title: str


class Annotation(TypedDict):
    type: Literal["url_citation"]
    url_citation: URLCitation


class ChatCompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    annotations: list[Annotation]
    tool_calls: NotRequired[list[ChatCompletionMessageToolCall]]
    reasoning_content: NotRequired[str]


class ChoiceLogprobs(TypedDict):
    content: list[Logprob]
    refusal: None


class Choice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class PromptTokensDetails(TypedDict):
    cached_tokens: int
    audio_tokens: int


class CompletionTokensDetails(TypedDict):
    reasoning_tokens: int
    audio_tokens: int
    accepted_prediction_tokens: int
    rejected_prediction_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChatEnvelope(TypedDict):
    """What a completion and each of its chunks start with."""

    id: str
    object: Literal["chat.completion", "chat.completion.chunk"]
    created: int
    model: str
    service_tier: str | None
    system_fingerprint: None


SummedUsage = dict[str, Any]  # n answers' usage added up (see `usage.sum_chat_usage`)


class ChatCompletion(ChatEnvelope):
    choices: list[Choice]
    usage: CompletionUsage | SummedUsage | None


class FunctionDelta(TypedDict):
    arguments: str


class CustomDelta(TypedDict):
    input: str


class ChoiceDeltaFunctionCall(TypedDict):
    """A function call's opening delta (id, name) or one more fragment of its arguments."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: Function | FunctionDelta


class ChoiceDeltaCustomCall(TypedDict):
    """A custom tool call's opening delta (id, name) or one more fragment of its input."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["custom"]]
    custom: Custom | CustomDelta


ChoiceDeltaToolCall = ChoiceDeltaFunctionCall | ChoiceDeltaCustomCall


class ChoiceDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    refusal: str
    reasoning_content: str
    tool_calls: list[ChoiceDeltaToolCall]


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(ChatEnvelope):
    usage: NotRequired[CompletionUsage | SummedUsage | None]  # present when the client asks
    choices: NotRequired[list[ChunkChoice]]  # absent only on the envelope the chunks copy


ChatStreamPiece = ChatCompletionChunk | ErrorBody  # what a translated Chat stream sends
