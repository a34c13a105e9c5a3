"""Token usage in both shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _count(details: object, *keys: str) -> int:
    """The first integer found under `keys` (backends name cache counters differently)."""
    if isinstance(details, Mapping):
        for key in keys:
            value = details.get(key)
            if isinstance(value, int):
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
