"""The Responses objects the translators build: output items and their parts, the response, its
usage and error, and the stream events.

TypedDicts, so they are plain dicts at run time (nothing is converted or checked) while mypy
rejects a misspelt or missing key. Each is named as the openai SDK names its type.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
Phase = Literal["commentary", "final_answer"]


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(TypedDict):
    """A token's logprob; Chat's `logprobs.content` entries have the same shape."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ResponseOutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Logprob]


class ResponseOutputRefusal(TypedDict):
    type: Literal["refusal"]
    refusal: str


class ResponseInputText(TypedDict):
    type: Literal["input_text"]
    text: str


class ReasoningPart(TypedDict):
    """Raw reasoning (`content`) or a summary of it (`summary`)."""

    type: Literal["reasoning_text", "summary_text"]
    text: str


MessagePart = ResponseOutputText | ResponseOutputRefusal


class ResponseOutputMessage(TypedDict):
    id: str
    type: Literal["message"]
    status: ItemStatus
    role: Literal["assistant"]
    content: list[MessagePart]
    phase: NotRequired[Phase]
    name: NotRequired[str]  # only sent upstream: a Chat participant's name, when forwarded


class ResponseReasoningItem(TypedDict):
    id: str
    type: Literal["reasoning"]
    status: ItemStatus
    summary: list[ReasoningPart]
    content: NotRequired[list[ReasoningPart]]
    encrypted_content: NotRequired[str]


class ResponseFunctionToolCall(TypedDict):
    id: str
    type: Literal["function_call"]
    status: ItemStatus
    call_id: str
    name: str
    arguments: str
    namespace: NotRequired[str]


class ResponseCustomToolCall(TypedDict):
    id: str
    type: Literal["custom_tool_call"]
    status: ItemStatus
    call_id: str
    name: str
    input: str
    namespace: NotRequired[str]


class ResponseCompactionItem(TypedDict):
    id: str
    type: Literal["compaction"]
    encrypted_content: str


ResponseToolCall = ResponseFunctionToolCall | ResponseCustomToolCall
ResponseOutputItem = (
    ResponseOutputMessage | ResponseReasoningItem | ResponseToolCall | ResponseCompactionItem
)


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(TypedDict):
    code: str
    message: str


class IncompleteDetails(TypedDict):
    reason: str


class ConversationRef(TypedDict):
    id: str


class SamplingEcho(TypedDict):
    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    top_logprobs: int
    max_output_tokens: int | None
    max_tool_calls: int | None


class ResponseEcho(SamplingEcho):
    """The request's settings a response repeats, the API's defaults filled in."""

    instructions: str | None
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any]
    text: dict[str, Any]
    truncation: str
    metadata: dict[str, str]
    store: bool
    background: bool
    service_tier: str
    safety_identifier: str | None
    prompt_cache_key: str | None
    prompt_cache_retention: str | None
    user: str | None
    conversation: NotRequired[ConversationRef]  # the proxy's to add: a turn joined to one


class Response(ResponseEcho):
    id: str
    object: Literal["response"]
    created_at: int
    status: ResponseStatus
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    model: str
    output: list[ResponseOutputItem]
    usage: ResponseUsage | None


class ResponseCompaction(TypedDict):
    """`POST /responses/compact`'s answer."""

    id: str
    object: Literal["response.compaction"]
    created_at: int
    output: list[dict[str, Any] | ResponseCompactionItem]  # the user messages kept, then it
    usage: ResponseUsage


class _Event(TypedDict):
    sequence_number: NotRequired[int]  # stamped by the stream's Emitter


TerminalEventType = Literal["response.completed", "response.incomplete", "response.failed"]


class ResponseLifecycleEvent(_Event):
    """`response.created`, `.in_progress` and the terminal events, each with the response."""

    type: Literal["response.created", "response.in_progress"] | TerminalEventType
    response: Response


class ResponseOutputItemAddedEvent(_Event):
    type: Literal["response.output_item.added"]
    output_index: int
    item: ResponseOutputItem


class ResponseOutputItemDoneEvent(_Event):
    type: Literal["response.output_item.done"]
    output_index: int
    item: ResponseOutputItem


class _ContentEvent(_Event):
    item_id: str
    output_index: int
    content_index: int


class ResponseContentPartAddedEvent(_ContentEvent):
    type: Literal["response.content_part.added"]
    part: MessagePart | ReasoningPart


class ResponseContentPartDoneEvent(_ContentEvent):
    type: Literal["response.content_part.done"]
    part: MessagePart | ReasoningPart


class ResponseTextDeltaEvent(_ContentEvent):
    type: Literal["response.output_text.delta"]
    delta: str
    logprobs: list[Logprob]


class ResponseTextDoneEvent(_ContentEvent):
    type: Literal["response.output_text.done"]
    text: str
    logprobs: list[Logprob]


class ResponseRefusalDeltaEvent(_ContentEvent):
    type: Literal["response.refusal.delta"]
    delta: str


class ResponseRefusalDoneEvent(_ContentEvent):
    type: Literal["response.refusal.done"]
    refusal: str


class ResponseReasoningTextDeltaEvent(_ContentEvent):
    type: Literal["response.reasoning_text.delta"]
    delta: str


class ResponseReasoningTextDoneEvent(_ContentEvent):
    type: Literal["response.reasoning_text.done"]
    text: str


class _SummaryEvent(_Event):
    item_id: str
    output_index: int
    summary_index: int


class ResponseReasoningSummaryPartAddedEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_part.added"]
    part: ReasoningPart


class ResponseReasoningSummaryPartDoneEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_part.done"]
    part: ReasoningPart


class ResponseReasoningSummaryTextDeltaEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_text.delta"]
    delta: str


class ResponseReasoningSummaryTextDoneEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_text.done"]
    text: str


class _CallEvent(_Event):
    item_id: str
    output_index: int


class ResponseFunctionCallArgumentsDeltaEvent(_CallEvent):
    type: Literal["response.function_call_arguments.delta"]
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_CallEvent):
    type: Literal["response.function_call_arguments.done"]
    arguments: str


class ResponseCustomToolCallInputDeltaEvent(_CallEvent):
    type: Literal["response.custom_tool_call_input.delta"]
    delta: str


class ResponseCustomToolCallInputDoneEvent(_CallEvent):
    type: Literal["response.custom_tool_call_input.done"]
    input: str


ResponseStreamEvent = (
    ResponseLifecycleEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseRefusalDeltaEvent
    | ResponseRefusalDoneEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent
    | ResponseReasoningSummaryPartAddedEvent
    | ResponseReasoningSummaryPartDoneEvent
    | ResponseReasoningSummaryTextDeltaEvent
    | ResponseReasoningSummaryTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseCustomToolCallInputDeltaEvent
    | ResponseCustomToolCallInputDoneEvent
)
