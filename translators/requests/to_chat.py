"""Responses request bodies as Chat Completions requests, and what their answer needs back.

Only the assembly: each field's rule, with its reverse beside it, is in the module of its
concept (see the package's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from diglot.translators.context import (
    Dropped,
    Options,
    ResponseContext,
    Sealing,
    pass_extras,
    refuse_if_strict,
)
from diglot.translators.ids import RESPONSE_PREFIX, IdFactory
from diglot.translators.reasoning import effort_to_chat, reasoning_echo
from diglot.translators.requests.include import (
    logprobs_to_chat,
    sealed_reasoning_asked,
    stream_to_chat,
)
from diglot.translators.requests.messages import input_to_chat
from diglot.translators.requests.sampling import sampling_echo, sampling_to_chat
from diglot.translators.requests.state import refuse_unkept_state_to_chat
from diglot.translators.requests.text_format import text_echo, text_to_chat
from diglot.translators.requests.tool_fields import declared_tools_to_chat, tool_fields_to_chat
from diglot.translators.requests.unmapped import responses_only_to_chat
from diglot.translators.responses_models import InputItem, Params, ResponsesRequest
from diglot.translators.responses_shapes import ResponseEcho


class ChatCall(msgspec.Struct):
    """What the proxy sends upstream and keeps for the way back."""

    body: dict[str, Any]
    context: ResponseContext
    dropped: list[Dropped]


def request_to_chat(
    req: ResponsesRequest,
    options: Options,
    *,
    now: int,
    new_id: IdFactory,
    history: Sequence[InputItem] | None = None,
    sealing: Sealing | None = None,
) -> ChatCall:
    """Maps, consumes, passes on or drops every field of a validated Responses request.

    `history` is the conversation `previous_response_id` names, already resolved by the
    caller; `sealing` opens `encrypted_content` reasoning and seals it when asked to.
    """
    params = req.params
    refuse_unkept_state_to_chat(params, history is not None)
    toolset = declared_tools_to_chat(req.tools)
    dropped = list(toolset.dropped)
    namer = toolset.namer.copy()
    tool_fields = tool_fields_to_chat(params, toolset.chat, namer, dropped)
    messages = input_to_chat(params, req.input, history or (), namer, dropped, options, sealing)
    body: dict[str, Any] = {"model": params.model, "messages": messages, **tool_fields}
    sampling_to_chat(params, options, body)
    include_logprobs = logprobs_to_chat(params, body)
    effort_to_chat(params.reasoning, body)
    text_to_chat(params.text, body)
    stream_to_chat(params, body)
    responses_only_to_chat(params, dropped)
    pass_extras(req.extras, body, dropped, "diglot sets this Chat field itself")
    refuse_if_strict(options, dropped)
    context = ResponseContext(
        response_id=new_id(RESPONSE_PREFIX),
        created_at=now,
        model=params.model,
        echo=_echo(params, toolset.echo),
        tools=namer.names,
        options=options,
        include_logprobs=include_logprobs,
        new_id=new_id,
        seal=sealing.seal if sealing and sealed_reasoning_asked(params) else None,
    )
    return ChatCall(body, context, dropped)


def _echo(params: Params, tools: list[dict[str, Any]]) -> ResponseEcho:
    """The settings a response object repeats back, with the API's defaults filled in."""
    sampling = sampling_echo(params)  # spelt out: the proxy may add `conversation` to the echo
    return {
        "instructions": params.instructions,
        "tools": tools,
        "tool_choice": "auto" if params.tool_choice is None else params.tool_choice,
        "parallel_tool_calls": params.parallel_tool_calls is not False,
        "temperature": sampling["temperature"],
        "top_p": sampling["top_p"],
        "presence_penalty": sampling["presence_penalty"],
        "frequency_penalty": sampling["frequency_penalty"],
        "top_logprobs": sampling["top_logprobs"],
        "max_output_tokens": sampling["max_output_tokens"],
        "max_tool_calls": sampling["max_tool_calls"],
        "previous_response_id": params.previous_response_id,
        "reasoning": reasoning_echo(params.reasoning),
        "text": text_echo(params.text),
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
