"""Deterministic ResponseContexts for response-direction tests (ids count up per prefix)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from diglot.translators.context import Options, ResponseContext, RestoredTool, ToolNames
from diglot.translators.ids import IdFactory, IdMint
from diglot.translators.requests import request_to_chat
from diglot.translators.responses_models import decode_responses_request


def _bare_request_echo() -> dict[str, Any]:
    """What a request naming only model and input echoes: every setting at its default."""
    request = decode_responses_request(b'{"model": "client-model", "input": "hi"}')
    return request_to_chat(request, Options(), now=0, new_id=IdMint()).context.echo


DEFAULT_ECHO = _bare_request_echo()


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
    """A fixture's `context`: its full `echo`, tools as {upstream: [kind, name, namespace]}."""
    tools = {
        upstream: RestoredTool(kind, name, namespace)
        for upstream, (kind, name, namespace) in spec.get("tools", {}).items()
    }
    ctx = make_context(
        tools=tools, include_logprobs=spec.get("include_logprobs", False), **spec.get("options", {})
    )
    ctx.echo = spec["echo"]
    return ctx
