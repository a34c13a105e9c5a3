"""What a request translation hands to the translation of its response (and stream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from diglot.translators.errors import RequestError
from diglot.translators.ids import IdFactory
from diglot.translators.responses_shapes import ResponseEcho

Seal = Callable[[str], str]


def _help(line: str | None) -> dict[str, str | None]:
    """A translation option's line in `diglot --help`: diglot's configuration makes each option
    a setting (flag, variable, file key) from its name, type and default."""
    return {"help": line}


@dataclass(frozen=True, slots=True)
class Options:
    """Translation knobs that come from diglot's configuration, each declared here only."""

    strict: bool = field(default=False, metadata=_help("refuse unmappable fields (400)"))
    instructions_role: Literal["system", "developer"] = field(
        default="system", metadata=_help("role for `instructions`")
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = field(
        default="max_tokens", metadata=_help(None)
    )
    # Summaries are what clients show (Codex, LangChain, the AI SDK); raw text few read.
    reasoning_events: Literal["text", "summary"] = field(
        default="summary",
        metadata=_help(
            "reasoning as a summary, which clients show (default), or as raw reasoning_text"
        ),
    )
    think_tags: bool = field(default=True, metadata=_help("split <think> blocks"))
    chat_reasoning_content: bool = field(
        default=True,
        metadata=_help("give Chat clients reasoning as `reasoning_content` (default on)"),
    )
    forward_chat_only_params: bool = field(
        default=False,
        metadata=_help(
            "send Chat-only params (stop, logit_bias, ...) to a Responses upstream as they are"
        ),
    )
    hoist_system: bool = field(
        default=False,
        metadata=_help("a Chat request's leading system message becomes `instructions`"),
    )


@dataclass(frozen=True, slots=True)
class Sealing:
    """Reasoning a stateless client carries as `encrypted_content`: sealed by the proxy, opened
    again (raising ValueError for a blob it did not seal) when the client sends it back."""

    seal: Seal
    open: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Dropped:
    """A request field diglot could not map and did not forward; logged, or a 400 when strict."""

    param: str
    reason: str


def pass_extras(
    extras: dict[str, Any], body: dict[str, Any], dropped: list[Dropped], reason: str
) -> None:
    """Keys neither API defines go upstream untouched, unless they would replace a mapped one."""
    for key, value in extras.items():
        if key in body:
            dropped.append(Dropped(key, reason))
        else:
            body[key] = value


def refuse_if_strict(options: Options, dropped: list[Dropped]) -> None:
    """Under `strict`, the first field that would be dropped is a 400 instead."""
    if options.strict and dropped:
        first = dropped[0]
        raise RequestError(
            f"'{first.param}' is not supported here: {first.reason}.",
            first.param,
            "unsupported_parameter",
        )


@dataclass(frozen=True, slots=True)
class RestoredTool:
    """A client-side tool as the client named it, found again from its upstream name."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


class ToolNames(msgspec.Struct):
    """Upstream function names <-> the client's tools (custom, namespaced, over-long names)."""

    by_upstream: dict[str, RestoredTool] = {}

    def restore(self, upstream_name: str) -> RestoredTool:
        """An unknown name is taken as a plain function the model invented."""
        return self.by_upstream.get(upstream_name) or RestoredTool("function", upstream_name)


class ResponseContext(msgspec.Struct, kw_only=True):
    """Everything the Chat -> Responses direction needs from the request it answers.

    A Struct, not a dataclass: made once per request, and msgspec builds it several times faster.
    """

    response_id: str
    created_at: int
    model: str
    echo: ResponseEcho
    tools: ToolNames
    options: Options
    new_id: IdFactory
    include_logprobs: bool = False
    seal: Seal | None = None  # set when the client asked for `reasoning.encrypted_content`


class ChatContext(msgspec.Struct, kw_only=True):
    """Everything the Responses -> Chat direction needs from the Chat request it answers."""

    completion_id: str
    created: int
    model: str
    options: Options
    new_id: IdFactory
    include_usage: bool = False
    include_logprobs: bool = False
