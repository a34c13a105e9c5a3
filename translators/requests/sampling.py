"""Sampling, limits and identity fields: the settings both APIs take, each way."""

from __future__ import annotations

from typing import Any

from diglot.translators.chat_models import ChatParams
from diglot.translators.context import Dropped, Options
from diglot.translators.responses_models import Params
from diglot.translators.responses_shapes import SamplingEcho

_TO_CHAT = ("chat",)
_TO_RESPONSES = ("responses",)
_BOTH = ("chat", "responses")
# Fields both APIs name and mean alike, passed on as given, and the API each is passed to; the
# other API lacks it (see `unmapped`), or, for `parallel_tool_calls`, Chat takes it only beside
# tools (see `tool_fields`).
_PASSED = {
    "temperature": _BOTH,
    "top_p": _BOTH,
    "presence_penalty": _TO_CHAT,
    "frequency_penalty": _TO_CHAT,
    "seed": _BOTH,
    "stop": _TO_CHAT,
    "parallel_tool_calls": _TO_RESPONSES,
    "user": _BOTH,
    "safety_identifier": _BOTH,
    "prompt_cache_key": _BOTH,
    "prompt_cache_options": _TO_RESPONSES,
    "metadata": _BOTH,
    "moderation": _TO_RESPONSES,
    "service_tier": _BOTH,
    "prompt_cache_retention": _TO_CHAT,
}
_PASSED_TO_CHAT = tuple(field for field, apis in _PASSED.items() if "chat" in apis)
_PASSED_TO_RESPONSES = tuple(field for field, apis in _PASSED.items() if "responses" in apis)


def sampling_to_chat(params: Params, options: Options, body: dict[str, Any]) -> None:
    """The shared fields, and `max_output_tokens` as the configured `max_tokens_field`."""
    for field in _PASSED_TO_CHAT:
        value = getattr(params, field)
        if value is not None:
            body[field] = value
    if params.max_output_tokens is not None:
        body[options.max_tokens_field] = params.max_output_tokens


def sampling_to_responses(params: ChatParams, body: dict[str, Any], dropped: list[Dropped]) -> None:
    """The shared fields, and `max_completion_tokens` (else the older `max_tokens`) as
    `max_output_tokens`."""
    for field in _PASSED_TO_RESPONSES:
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


def sampling_echo(params: Params) -> SamplingEcho:
    """The sampling and limit settings a response repeats, with the API's defaults filled in."""
    return {
        "temperature": 1.0 if params.temperature is None else params.temperature,
        "top_p": 1.0 if params.top_p is None else params.top_p,
        "presence_penalty": params.presence_penalty or 0.0,
        "frequency_penalty": params.frequency_penalty or 0.0,
        "top_logprobs": params.top_logprobs or 0,
        "max_output_tokens": params.max_output_tokens,
        "max_tool_calls": params.max_tool_calls,
    }
