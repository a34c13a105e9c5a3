"""What the answer carries besides its text: logprobs, usage in a stream, sealed reasoning.

Responses asks through `include` (and always streams usage); Chat through `logprobs` and
`stream_options`.
"""

from __future__ import annotations

from typing import Any

from diglot.translators.chat_models import ChatParams
from diglot.translators.responses_models import Params

LOGPROBS = "message.output_text.logprobs"
ENCRYPTED_REASONING = "reasoning.encrypted_content"


def logprobs_to_chat(params: Params, body: dict[str, Any]) -> bool:
    """`include` naming output logprobs -> `logprobs` (and `top_logprobs`); True when asked."""
    asked = params.include is not None and LOGPROBS in params.include
    if asked:
        body["logprobs"] = True
        if params.top_logprobs is not None:
            body["top_logprobs"] = params.top_logprobs
    return asked


def logprobs_to_responses(params: ChatParams, body: dict[str, Any]) -> bool:
    """`logprobs` -> `include` naming output logprobs, `top_logprobs` as given; True when
    asked."""
    asked = bool(params.logprobs)
    if asked:
        body["include"] = [LOGPROBS]
    if params.top_logprobs is not None:
        body["top_logprobs"] = params.top_logprobs
    return asked


def stream_to_chat(params: Params, body: dict[str, Any]) -> None:
    """A Responses stream ends with its usage: a Chat stream is asked for it."""
    if params.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}


def stream_to_responses(params: ChatParams, body: dict[str, Any]) -> None:
    """`stream`, and `stream_options.include_obfuscation`; usage always comes."""
    if params.stream:
        body["stream"] = True
        obfuscation = params.stream_options and params.stream_options.include_obfuscation
        if obfuscation is not None:
            body["stream_options"] = {"include_obfuscation": obfuscation}


def usage_asked(params: ChatParams) -> bool:
    """A Chat stream carries usage only when `stream_options.include_usage` asks for it."""
    return bool(params.stream_options and params.stream_options.include_usage)


def sealed_reasoning_asked(params: Params) -> bool:
    """The client carries reasoning itself, as `encrypted_content`."""
    return params.include is not None and ENCRYPTED_REASONING in params.include
