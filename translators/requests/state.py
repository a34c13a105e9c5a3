"""State between requests: what a Chat upstream cannot keep, what a Responses upstream is told to.

diglot keeps the responses it gives Responses clients in its own store, and the proxy resolves
`previous_response_id` and `item_reference` items from it before translating; a translation
given them unresolved refuses them. Likewise `background`: `POST /v1/responses` takes it (the
proxy runs the request detached) before translating, so a translation still given it is for a
route that has no background mode.
"""

from __future__ import annotations

from typing import Any, NoReturn

from diglot.translators.chat_models import ChatParams
from diglot.translators.context import Dropped
from diglot.translators.errors import RequestError
from diglot.translators.responses_models import Params

_UNRESOLVED_PREVIOUS = (
    "Continuing from 'previous_response_id' needs the stored turns it names, and none were "
    "resolved for this request; send the whole conversation in 'input'."
)
_CONVERSATIONS = (
    "A 'conversation' needs its stored items, and none were resolved for this request; "
    "POST /v1/responses takes one, or send the whole conversation in 'input'."
)
_BACKGROUND = "Only POST /v1/responses runs responses in the background; omit 'background' here."


def refuse_unkept_state_to_chat(params: Params, resolved: bool) -> None:
    """State a Chat upstream cannot hold and diglot did not resolve is a 400."""
    if params.previous_response_id is not None and not resolved:
        raise RequestError(_UNRESOLVED_PREVIOUS, "previous_response_id", "unsupported_parameter")
    if params.conversation is not None:
        raise RequestError(_CONVERSATIONS, "conversation", "unsupported_parameter")
    if params.background:
        raise RequestError(_BACKGROUND, "background", "unsupported_parameter")


def refuse_reference_to_chat(index: int) -> NoReturn:
    """An `item_reference` left unresolved: the translation has no store to look it up in."""
    raise RequestError(
        "Input items of type 'item_reference' need the stored item they name, and none was "
        "resolved for this request; send the referenced item itself.",
        f"input[{index}].id",
        "unsupported_value",
    )


def store_to_responses(params: ChatParams, body: dict[str, Any]) -> None:
    """`store` as the client gave it, else false: Chat's default, not Responses' (true)."""
    body["store"] = bool(params.store)


def background_to_responses(extras: dict[str, Any], dropped: list[Dropped]) -> dict[str, Any]:
    """The extras without a true `background`: a chat completion cannot wait for one."""
    if not extras.get("background"):
        return extras
    dropped.append(Dropped("background", "a chat completion cannot wait for one"))
    return {key: value for key, value in extras.items() if key != "background"}
