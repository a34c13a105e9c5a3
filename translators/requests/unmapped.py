"""Fields one API has and the other has no twin for, side by side: dropped with a reason (a 400
under `strict`), or, toward a Responses upstream, forwarded as given when configured."""

from __future__ import annotations

from typing import Any

from diglot.translators.chat_models import ChatParams
from diglot.translators.context import Dropped, Options
from diglot.translators.responses_models import Params

_RESPONSES_ONLY = {
    "max_tool_calls": "a Chat upstream has no limit on tool calls per response",
    "prompt": "stored prompt templates cannot be resolved for a Chat upstream",
    "moderation": "a Chat upstream does not run moderation",
    "access_programs": "a Chat upstream has no access programs",
    "prompt_cache_options": "a Chat upstream takes no prompt cache options",
    "image": "a Chat upstream takes no image context settings",
    "background_options": "background mode is not supported",
}
_CHAT_ONLY = {
    "stop": "Responses has no stop sequences",
    "logit_bias": "Responses takes no token biases",
    "frequency_penalty": "Responses takes no frequency penalty",
    "presence_penalty": "Responses takes no presence penalty",
    "audio": "Responses gives no audio output",
    "modalities": "Responses gives no audio output",
    "prediction": "Responses takes no predicted output",
}


def responses_only_to_chat(params: Params, dropped: list[Dropped]) -> None:
    """Responses-only fields: a Chat upstream would refuse them, so they are dropped."""
    for field, reason in _RESPONSES_ONLY.items():
        if getattr(params, field) is not None:
            dropped.append(Dropped(field, reason))


def chat_only_to_responses(
    params: ChatParams, options: Options, body: dict[str, Any], dropped: list[Dropped]
) -> None:
    """Chat-only fields: forwarded as given when configured (for upstreams that take them), else
    dropped; `modalities` only when it asks for audio."""
    for field, reason in _CHAT_ONLY.items():
        value = getattr(params, field)
        if value is None or (field == "modalities" and "audio" not in value):
            continue
        if options.forward_chat_only_params:
            body[field] = value
        else:
            dropped.append(Dropped(field, reason))
