"""Chat Completions request bodies as Responses requests, and what their answer needs back.

Only the assembly: each field's rule, with its reverse beside it, is in the module of its
concept (see the package's docstring).
"""

from __future__ import annotations

from typing import Any

import msgspec

from diglot.translators.chat_models import ChatRequest
from diglot.translators.context import (
    ChatContext,
    Dropped,
    Options,
    pass_extras,
    refuse_if_strict,
)
from diglot.translators.ids import CHAT_COMPLETION_PREFIX, IdFactory
from diglot.translators.reasoning import effort_to_responses
from diglot.translators.requests.include import (
    logprobs_to_responses,
    stream_to_responses,
    usage_asked,
)
from diglot.translators.requests.messages import messages_to_responses
from diglot.translators.requests.sampling import sampling_to_responses
from diglot.translators.requests.state import background_to_responses, store_to_responses
from diglot.translators.requests.text_format import text_to_responses
from diglot.translators.requests.tool_fields import tool_fields_to_responses
from diglot.translators.requests.unmapped import chat_only_to_responses


class ResponsesCall(msgspec.Struct):
    """What the proxy sends upstream (`n` times) and keeps for the way back."""

    body: dict[str, Any]
    context: ChatContext
    dropped: list[Dropped]
    n: int


def request_to_responses(
    req: ChatRequest, options: Options, *, now: int, new_id: IdFactory
) -> ResponsesCall:
    """Maps, consumes, passes on or drops every field of a validated Chat request."""
    params = req.params
    dropped: list[Dropped] = []
    body: dict[str, Any] = {"model": params.model}
    messages_to_responses(params.messages, options, body, dropped, new_id)
    tool_fields_to_responses(params, body, dropped)
    sampling_to_responses(params, body, dropped)
    effort_to_responses(params.reasoning_effort, body)
    text_to_responses(params, body)
    include_logprobs = logprobs_to_responses(params, body)
    stream_to_responses(params, body)
    store_to_responses(params, body)
    chat_only_to_responses(params, options, body, dropped)
    extras = background_to_responses(req.extras, dropped)
    pass_extras(extras, body, dropped, "diglot sets this Responses field itself")
    refuse_if_strict(options, dropped)
    context = ChatContext(
        completion_id=_completion_id(new_id),
        created=now,
        model=params.model,
        options=options,
        include_usage=usage_asked(params),
        include_logprobs=include_logprobs,
        new_id=new_id,
    )
    return ResponsesCall(body, context, dropped, params.n or 1)


def _completion_id(new_id: IdFactory) -> str:
    """OpenAI's `chatcmpl-…` form: a hyphen where other ids have an underscore."""
    return "chatcmpl-" + new_id(CHAT_COMPLETION_PREFIX).removeprefix("chatcmpl_")
