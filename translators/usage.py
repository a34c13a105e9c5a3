"""Token usage in both shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from diglot.translators.chat_shapes import CompletionUsage, SummedUsage
from diglot.translators.responses_shapes import ResponseUsage

_NONE: Mapping[str, Any] = MappingProxyType({})


def _count(value: object) -> int:
    """A token counter as sent, or 0 for anything that is not an integer (bools included)."""
    return value if type(value) is int else 0


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    details = usage.get(key)
    return details if isinstance(details, dict) else _NONE


def usage_to_responses(usage: Mapping[str, Any]) -> ResponseUsage:
    """Chat `usage` as Responses usage, every detail present (strict clients reject gaps).

    Backends name cache counters differently: OpenAI's details first, then DeepSeek's and
    Anthropic-style top-level counters.
    """
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    prompt_details = _details(usage, "prompt_tokens_details")
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens"))
            or _count(usage.get("prompt_cache_hit_tokens")),
            "cache_write_tokens": _count(prompt_details.get("cache_write_tokens"))
            or _count(usage.get("cache_creation_input_tokens")),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": _count(
                _details(usage, "completion_tokens_details").get("reasoning_tokens")
            ),
        },
        "total_tokens": _count(usage.get("total_tokens")) or input_tokens + output_tokens,
    }


def usage_to_chat(usage: Mapping[str, Any]) -> CompletionUsage:
    """Responses usage as Chat `usage` with every detail OpenAI sends (audio, predictions: 0)."""
    prompt_tokens = _count(usage.get("input_tokens"))
    completion_tokens = _count(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": _count(usage.get("total_tokens")) or prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": _count(_details(usage, "input_tokens_details").get("cached_tokens")),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": _count(
                _details(usage, "output_tokens_details").get("reasoning_tokens")
            ),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def sum_chat_usage(usages: Sequence[Mapping[str, Any]]) -> SummedUsage:
    """The usage of n answers to one request (n > 1 fan-out): every counter summed, details too."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            if isinstance(value, dict):
                total[key] = sum_chat_usage([total.get(key) or {}, value])
            elif isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total
