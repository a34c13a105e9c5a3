"""Chat Completions answers as Responses objects: the one builder both stream and non-stream use."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from diglot.translators.chat_shapes import (
    Annotation,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceLogprobs,
    FinishReason,
)
from diglot.translators.content import (
    annotations_to_chat,
    chat_content_text,
    message_item,
    output_text_part,
    refusal_part,
    token_logprobs_to_chat,
    token_logprobs_to_responses,
)
from diglot.translators.context import ChatContext, ResponseContext
from diglot.translators.errors import error_to_responses, failed_response_to_chat, responses_error
from diglot.translators.ids import ITEM_PREFIXES
from diglot.translators.reasoning import (
    ITEM_SEPARATOR,
    output_reasoning_to_chat,
    reasoning_item,
    split_think,
)
from diglot.translators.responses_shapes import (
    Logprob,
    MessagePart,
    Phase,
    Response,
    ResponseError,
    ResponseOutputItem,
    ResponseStatus,
    ResponseUsage,
)
from diglot.translators.tools import TOOL_CALL_ITEMS, tool_call_item_to_chat, tool_call_to_responses
from diglot.translators.usage import (
    sum_chat_usage,
    usage_to_chat,
    usage_to_responses,
)

FinalItemStatus = Literal["completed", "incomplete"]  # what an ended response's items are


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a response ended: its status, its items' status, and why if not completed."""

    status: ResponseStatus
    item_status: FinalItemStatus = "completed"
    incomplete_reason: str | None = None
    error: ResponseError | None = None


IN_PROGRESS = Outcome("in_progress")
COMPLETED = Outcome("completed")
_CUT_OFF = {
    "length": Outcome("incomplete", "incomplete", "max_output_tokens"),
    "max_tokens": Outcome("incomplete", "incomplete", "max_output_tokens"),
    "content_filter": Outcome("incomplete", "incomplete", "content_filter"),
}


def finish_reason_to_responses(finish_reason: str | None) -> Outcome:
    """Chat `finish_reason` -> status; a cut-off answer is never reported as completed."""
    if finish_reason == "error":
        return failure_outcome(responses_error("The upstream model stopped with an error."))
    return _CUT_OFF.get(finish_reason or "", COMPLETED)


def failure_outcome(error: ResponseError) -> Outcome:
    """A failed response with its Responses `error` object; its items stay incomplete."""
    return Outcome("failed", "incomplete", error=error)


def response_object(
    ctx: ResponseContext,
    outcome: Outcome,
    output: list[ResponseOutputItem],
    *,
    model: str | None = None,
    usage: ResponseUsage | None = None,
    completed_at: int | None = None,
) -> Response:
    """The full `response` object, every key present, the request's echoed settings merged in."""
    error, reason = outcome.error, outcome.incomplete_reason
    return {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created_at,
        "status": outcome.status,
        "completed_at": completed_at if outcome.status == "completed" else None,
        "error": None if error is None else error.copy(),
        "incomplete_details": None if reason is None else {"reason": reason},
        "model": model or ctx.model,
        "output": output,
        "usage": usage,
        **ctx.echo,  # no echoed setting shares a key with the fields above
    }


def now_seconds() -> int:
    return int(time.time())


def completion_to_responses(
    completion: dict[str, Any],
    ctx: ResponseContext,
    *,
    now: int | None = None,
    leading: Sequence[ResponseOutputItem] = (),
) -> Response:
    """A non-streamed chat.completion as the Responses object a client would have received.

    `leading` are whole items the output starts with (a compaction made before answering).
    """
    model = completion.get("model") if isinstance(completion.get("model"), str) else None
    usage = completion.get("usage")
    mapped_usage = usage_to_responses(usage) if isinstance(usage, dict) else None
    choices = completion.get("choices")
    if completion.get("error") is not None:
        outcome = failure_outcome(error_to_responses(completion["error"]))
        output: list[ResponseOutputItem] = []
    elif not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        outcome = failure_outcome(responses_error("The upstream returned no choices."))
        output = []
    else:
        choice = choices[0]
        reason = choice.get("finish_reason")
        outcome = finish_reason_to_responses(reason if isinstance(reason, str) else None)
        output = _choice_output(choice, ctx, outcome.item_status)
    completed = now_seconds() if now is None else now
    return response_object(
        ctx, outcome, [*leading, *output], model=model, usage=mapped_usage, completed_at=completed
    )


def _choice_output(
    choice: Mapping[str, Any], ctx: ResponseContext, cut: FinalItemStatus
) -> list[ResponseOutputItem]:
    """Reasoning, then the message, then one item per tool call, as a stream orders them.

    As in a stream, only the items still open at the end carry a cut-off status (`cut`): all
    tool calls if there are any, otherwise the last item; the model finished the ones before.
    """
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    reasoning, answer = _reasoning_and_answer(message, ctx)
    logprobs = choice_logprobs_to_responses(choice) if ctx.include_logprobs else []
    parts: list[MessagePart] = [output_text_part(answer, logprobs)] if answer else []
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(refusal_part(refusal))
    listed = message.get("tool_calls")
    calls = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    output: list[ResponseOutputItem] = []
    if reasoning:
        status: FinalItemStatus = cut if not parts and not calls else "completed"
        mode = ctx.options.reasoning_events
        sealed = ctx.seal(reasoning) if ctx.seal is not None else None
        output.append(
            reasoning_item(ctx.new_id(ITEM_PREFIXES["reasoning"]), reasoning, mode, status, sealed)
        )
    if parts:
        item = message_item(
            ctx.new_id(ITEM_PREFIXES["message"]), parts, "completed" if calls else cut
        )
        item["phase"] = message_phase(followed=bool(calls))
        output.append(item)
    if calls:
        output.extend(tool_call_to_responses(call, ctx, cut) for call in calls)
    return output


def message_phase(followed: bool) -> Phase:
    """An assistant message's `phase`, as agent clients read it: text that other items (tool
    calls) follow in the same response is commentary, the text that closes it the final answer."""
    return "commentary" if followed else "final_answer"


def _reasoning_and_answer(message: Mapping[str, Any], ctx: ResponseContext) -> tuple[str, str]:
    """The message's reasoning field plus any leading think block, and the answer after it."""
    reasoning = chat_reasoning_text(message)
    answer = chat_content_text(message.get("content"))
    if answer and ctx.options.think_tags:
        thought, answer = split_think(answer)
        reasoning += thought
    return reasoning, answer


def choice_logprobs_to_responses(choice: Mapping[str, Any]) -> list[Logprob]:
    """A Chat choice's (or chunk choice's) token logprobs as a Responses text part's."""
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    return token_logprobs_to_responses(entries) if isinstance(entries, list) else []


def chat_reasoning_text(message: Mapping[str, Any]) -> str:
    """A Chat message's (or delta's) reasoning: `reasoning_content`, or vLLM's `reasoning`."""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return reasoning if isinstance(reasoning, str) else ""


_CHAT_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})


def chat_envelope(
    ctx: ChatContext,
    response: Mapping[str, Any],
    kind: Literal["chat.completion", "chat.completion.chunk"],
) -> ChatCompletionChunk:
    """What a chat.completion and each of its chunks start with; `model` is the upstream's."""
    model = response.get("model")
    tier = response.get("service_tier")
    return {
        "id": ctx.completion_id,
        "object": kind,
        "created": ctx.created,
        "model": model if isinstance(model, str) and model else ctx.model,
        "service_tier": tier if isinstance(tier, str) and tier in _CHAT_SERVICE_TIERS else None,
        "system_fingerprint": None,
    }


def status_to_chat(response: Mapping[str, Any], called_tools: bool) -> FinishReason:
    """A completed or incomplete response's `finish_reason`; a cut-off tool call stays cut off."""
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called_tools else "stop"


def choice_logprobs_to_chat(ctx: ChatContext, entries: object) -> ChoiceLogprobs | None:
    """A choice's `logprobs`, present only when the client asked for them."""
    if not ctx.include_logprobs:
        return None
    content = token_logprobs_to_chat(entries) if isinstance(entries, list) else []
    return {"content": content, "refusal": None}


def response_to_chat(response: dict[str, Any], ctx: ChatContext, index: int = 0) -> ChatCompletion:
    """A non-streamed Responses object as the chat.completion a client would have received."""
    if response.get("status") not in ("completed", "incomplete"):
        raise failed_response_to_chat(response)
    output = response.get("output")
    items = [i for i in output if isinstance(i, dict)] if isinstance(output, list) else []
    message, logprobs = _chat_message(items, ctx)
    usage = response.get("usage")
    choice: Choice = {
        "index": index,
        "message": message,
        "logprobs": choice_logprobs_to_chat(ctx, logprobs),
        "finish_reason": status_to_chat(response, "tool_calls" in message),
    }
    return {
        **chat_envelope(ctx, response, "chat.completion"),
        "choices": [choice],
        "usage": usage_to_chat(usage) if isinstance(usage, dict) else None,
    }


def _chat_message(
    items: list[dict[str, Any]], ctx: ChatContext
) -> tuple[ChatCompletionMessage, list[dict[str, Any]]]:
    """The assistant message from the output items, and the logprobs of its text."""
    texts: list[str] = []
    refusals: list[str] = []
    annotations: list[Annotation] = []
    logprobs: list[dict[str, Any]] = []
    calls: list[ChatCompletionMessageToolCall] = []
    reasoning: list[str] = []
    length = 0
    for item in items:
        kind = item.get("type")
        if kind == "message" and isinstance(item.get("content"), list):
            for part in item["content"]:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    annotations += annotations_to_chat(part.get("annotations"), length)
                    texts.append(part["text"])
                    length += len(part["text"])
                    if isinstance(part.get("logprobs"), list):
                        logprobs += part["logprobs"]
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind in TOOL_CALL_ITEMS:
            calls.append(tool_call_item_to_chat(item))
        elif kind == "reasoning" and ctx.options.chat_reasoning_content:
            text = output_reasoning_to_chat(item)
            if text:
                reasoning.append(text)
    message: ChatCompletionMessage = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
        "annotations": annotations,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = ITEM_SEPARATOR.join(reasoning)
    return message, logprobs


def merge_chat_choices(completions: list[ChatCompletion]) -> ChatCompletion:
    """The n answers of a fanned-out request as one completion: choices 0..n-1, usage summed."""
    merged = completions[0].copy()
    merged["choices"] = [
        {**completion["choices"][0], "index": index} for index, completion in enumerate(completions)
    ]
    usages = [usage for c in completions if isinstance(usage := c.get("usage"), Mapping)]
    merged["usage"] = sum_chat_usage(usages) if usages else None
    return merged
