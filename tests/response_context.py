"""Deterministic ResponseContexts for response-direction tests (ids count up per prefix)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from translators.context import IdFactory, Options, ResponseContext, RestoredTool, ToolNames

# What a request without options echoes: every setting with the API's default.
DEFAULT_ECHO: dict[str, Any] = {
    "instructions": None,
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "top_logprobs": 0,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "previous_response_id": None,
    "reasoning": None,
    "text": {"format": {"type": "text"}},
    "truncation": "disabled",
    "metadata": {},
    "store": False,
    "background": False,
    "service_tier": "auto",
    "safety_identifier": None,
    "prompt_cache_key": None,
    "user": None,
}


def counting_ids() -> IdFactory:
    """`msg_0`, `msg_1`, `fc_0`…: predictable ids for exact expectations."""
    counts: Counter[str] = Counter()

    def new_id(prefix: str) -> str:
        number = counts[prefix]
        counts[prefix] += 1
        return f"{prefix}_{number}"

    return new_id


def make_context(
    *,
    tools: dict[str, RestoredTool] | None = None,
    echo: dict[str, Any] | None = None,
    include_logprobs: bool = False,
    **options: Any,
) -> ResponseContext:
    return ResponseContext(
        response_id="resp_test",
        created_at=1_700_000_000,
        model="client-model",
        echo={**DEFAULT_ECHO, **(echo or {})},
        tools=ToolNames(dict(tools or {})),
        options=Options(**options),
        include_logprobs=include_logprobs,
        new_id=counting_ids(),
    )


def context_from_fixture(spec: dict[str, Any]) -> ResponseContext:
    """A fixture's `context` member: tools as {upstream: [kind, name, namespace]}, options."""
    tools = {
        upstream: RestoredTool(kind, name, namespace)
        for upstream, (kind, name, namespace) in spec.get("tools", {}).items()
    }
    return make_context(
        tools=tools,
        echo=spec.get("echo"),
        include_logprobs=spec.get("include_logprobs", False),
        **spec.get("options", {}),
    )
