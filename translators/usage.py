"""Token usage in both shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _count(details: object, *keys: str) -> int:
    """The first integer found under `keys` (backends name cache counters differently)."""
    if isinstance(details, Mapping):
        for key in keys:
            value = details.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return 0


def chat_usage_to_responses(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Chat `usage` as Responses usage, every detail present (strict clients reject gaps)."""
    input_tokens = _count(usage, "prompt_tokens")
    output_tokens = _count(usage, "completion_tokens")
    prompt_details = usage.get("prompt_tokens_details")
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details, "cached_tokens")
            or _count(usage, "prompt_cache_hit_tokens"),
            "cache_write_tokens": _count(prompt_details, "cache_write_tokens")
            or _count(usage, "cache_creation_input_tokens"),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": _count(usage.get("completion_tokens_details"), "reasoning_tokens"),
        },
        "total_tokens": _count(usage, "total_tokens") or input_tokens + output_tokens,
    }


def responses_usage_to_chat(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Responses usage as Chat `usage` with every detail OpenAI sends (audio, predictions: 0)."""
    prompt_tokens = _count(usage, "input_tokens")
    completion_tokens = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": _count(usage, "total_tokens") or prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": _count(usage.get("input_tokens_details"), "cached_tokens"),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": _count(usage.get("output_tokens_details"), "reasoning_tokens"),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def sum_chat_usage(usages: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The usage of n answers to one request (n > 1 fan-out): every counter summed, details too."""
    total: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            if isinstance(value, Mapping):
                total[key] = sum_chat_usage([total.get(key) or {}, value])
            elif isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total
