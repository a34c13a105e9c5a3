"""Compaction over a chat backend: the backend summarises the conversation, the proxy seals it.

A `compaction` item stands for the conversation before it. Its `encrypted_content` is the
backend's own summary, sealed like reasoning (bound to the caller's key). What a chat backend is
sent for a conversation holding one:

- the system, developer and user messages before the latest compaction item, as they are (the
  client keeps them; `/responses/compact` answers with the user messages for that reason);
- the summary, opened, as one user message (`summary_message`) where the item stands;
- the items after it.

Everything else before it (assistant messages, reasoning, tool calls and their outputs, earlier
compaction items) is what the summary replaces and is not sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeGuard

import msgspec

from diglot.translators.content import chat_content_text, message_text_parts
from diglot.translators.errors import RequestError, error_to_responses
from diglot.translators.ids import ITEM_PREFIXES, IdFactory
from diglot.translators.reasoning import split_think
from diglot.translators.responses_models import (
    CompactionItem,
    CompactionTriggerItem,
    InputItem,
    MessageItem,
    Params,
)
from diglot.translators.responses_shapes import ResponseCompaction, ResponseCompactionItem
from diglot.translators.usage import usage_to_responses

DEFAULT_PROMPT = """\
Compact this conversation: write the summary that replaces it, so that the assistant can go \
on with the work in a fresh context. The assistant will then see only the system and user \
messages, this summary, and what comes next. Include:
- the user's goals and requirements, and the constraints and preferences they stated;
- the decisions taken and why, and the approaches that were tried and failed;
- the files read, created or changed, and the commands run, with the results that matter \
(errors, test outcomes, key output);
- what is done and what is still open;
- the next step.
Be concise and specific: keep exact names, paths, identifiers and values. Write only the \
summary, with no preamble."""

SUMMARY_PREFIX = (
    "The conversation before this point was compacted into the summary below. Use it to go on "
    "with the work without repeating what is done.\n\n"
)
CHARS_PER_TOKEN = 4  # the estimate where no count was reported: 4 characters of JSON a token
_KEPT_ROLES = frozenset({"system", "developer", "user"})
# What the summary request needs of the answer: one whole text, nothing of the turn's own format.
_ANSWER_FIELDS = (
    "stream",
    "stream_options",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
)


class Summary(NamedTuple):
    """The backend's answer to a summary request: its text ("" if none), its Chat usage, and
    the error it reported, if it did."""

    text: str
    usage: Mapping[str, Any] | None
    error: str | None = None


def compaction_item(item_id: str, sealed: str) -> ResponseCompactionItem:
    """The `compaction` item a client keeps: the summary as the proxy sealed it."""
    return {"id": item_id, "type": "compaction", "encrypted_content": sealed}


def summary_message(summary: str) -> dict[str, Any]:
    """An opened summary as the Chat message that stands where its compaction item was."""
    return {"role": "user", "content": SUMMARY_PREFIX + summary}


def kept_before_compaction(item: InputItem) -> TypeGuard[MessageItem]:
    """Items before a compaction item that are sent as they are: instructions and the user's."""
    return type(item) is MessageItem and item.role in _KEPT_ROLES


def last_compaction(items: Sequence[InputItem]) -> int:
    """The position of the latest compaction item, or -1."""
    if CompactionItem not in map(type, items):
        return -1
    return max(index for index, item in enumerate(items) if type(item) is CompactionItem)


def ends_in_trigger(items: str | Sequence[InputItem]) -> bool:
    """Whether the input ends in a `compaction_trigger`: the response is the compaction alone."""
    return not isinstance(items, str) and bool(items) and type(items[-1]) is CompactionTriggerItem


def with_compaction(
    items: str | Sequence[InputItem], item: ResponseCompactionItem
) -> list[InputItem]:
    """The input with a compaction item after it: what the turn is answered from."""
    given = [MessageItem(role="user", content=items)] if isinstance(items, str) else list(items)
    return [*given, msgspec.convert(item, CompactionItem)]


def compact_threshold(params: Params) -> int | None:
    """`context_management`'s compaction threshold, if it sets one; a malformed entry is a 400."""
    threshold = None
    for index, entry in enumerate(params.context_management or ()):
        path = f"context_management[{index}]"
        if not isinstance(entry, dict) or entry.get("type") != "compaction":
            kind = entry.get("type") if isinstance(entry, dict) else None
            raise RequestError(
                f"Invalid value for '{path}.type': {kind!r}; the only type is 'compaction'.",
                f"{path}.type",
                "invalid_value",
            )
        given = entry.get("compact_threshold")
        if given is None:
            continue
        if type(given) is not int or given <= 0:
            raise RequestError(
                f"Invalid value for '{path}.compact_threshold': expected a positive integer.",
                f"{path}.compact_threshold",
                "invalid_value",
            )
        threshold = given if threshold is None else min(threshold, given)
    return threshold


def past_threshold(
    params: Params,
    body: Mapping[str, Any],
    items: str | Sequence[InputItem],
    previous: Mapping[str, Any] | None,
) -> bool:
    """Whether `context_management` asks for the turn to be compacted before it is answered: its
    context (`context_tokens`) is over the threshold."""
    threshold = compact_threshold(params)
    return threshold is not None and context_tokens(body, items, previous) > threshold


def estimated_tokens(value: object) -> int:
    """Tokens in a value by its length as JSON: 4 characters a token, rounded up."""
    return math.ceil(len(msgspec.json.encode(value)) / CHARS_PER_TOKEN)


def context_tokens(
    body: Mapping[str, Any],
    items: str | Sequence[InputItem],
    previous: Mapping[str, Any] | None,
) -> int:
    """What a turn's context costs, in tokens.

    Continuing a response that reported its usage (`previous`), and adding no compaction
    item: its input and output tokens, plus this turn's input estimated. Otherwise the Chat
    request's messages and tools, estimated.
    """
    reported = previous or {}
    used, answered = reported.get("input_tokens"), reported.get("output_tokens")
    fresh = isinstance(items, str) or last_compaction(items) < 0
    if fresh and type(used) is int and type(answered) is int:
        return used + answered + estimated_tokens(items)
    return estimated_tokens([body.get("messages"), body.get("tools")])


def summary_request(body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
    """The Chat request asking the backend for the summary: the conversation as the turn would
    send it, then `prompt` as the last user message; one whole answer, text only."""
    request = {key: value for key, value in body.items() if key not in _ANSWER_FIELDS}
    request["messages"] = [*body["messages"], {"role": "user", "content": prompt}]
    if request.get("tools"):
        request["tool_choice"] = "none"
    return request


def completion_summary(completion: Mapping[str, Any], think_tags: bool) -> Summary:
    """The summary in a chat.completion: its first choice's text, a leading think block left out."""
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else None
    error = completion.get("error")
    if error is not None:
        return Summary("", usage, error_to_responses(error)["message"])
    choices = completion.get("choices") or [{}]
    text = chat_content_text(choices[0].get("message", {}).get("content"))
    if think_tags:
        text = split_think(text)[1]
    return Summary(text.strip(), usage)


def compacted_response(
    response_id: str,
    created_at: int,
    kept: list[dict[str, Any]],
    item: ResponseCompactionItem,
    usage: Mapping[str, Any] | None,
) -> ResponseCompaction:
    """`POST /responses/compact`'s answer: the window the client keeps, and the call's usage."""
    return {
        "id": response_id,
        "object": "response.compaction",
        "created_at": created_at,
        "output": [*kept, item],
        "usage": usage_to_responses(usage or {}),
    }


def user_messages(
    history: Sequence[InputItem], items: str | Sequence[InputItem], new_id: IdFactory
) -> list[dict[str, Any]]:
    """The user messages of a conversation (earlier turns' items, then this request's input),
    as the items a compacted window keeps."""
    given = [MessageItem(role="user", content=items)] if isinstance(items, str) else items
    return [
        {
            "id": item.id or new_id(ITEM_PREFIXES["message"]),
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": _parts(item.content),
        }
        for item in [*history, *given]
        if type(item) is MessageItem and item.role == "user"
    ]


def _parts(content: object) -> Sequence[Mapping[str, Any]]:
    """A user message's content as parts, without the fields the client left out."""
    if isinstance(content, str):
        return message_text_parts("user", content)
    parts: list[dict[str, Any]] = msgspec.to_builtins(content)
    return [{key: value for key, value in part.items() if value is not None} for part in parts]
