"""The `tools`, `tool_choice` and `parallel_tool_calls` fields, each way; how each tool and
choice maps is `translators.tools`."""

from __future__ import annotations

from typing import Any

import msgspec

from diglot.translators.chat_models import ChatParams
from diglot.translators.context import Dropped
from diglot.translators.responses_models import DeclaredTools, Params
from diglot.translators.tools import (
    ToolNamer,
    tool_choice_to_chat,
    tool_choice_to_responses,
    tool_echo,
    tools_to_chat,
    tools_to_responses,
    web_search_to_responses,
)


class ChatToolset(msgspec.Struct, frozen=True):
    """Declared tools as a Chat upstream and the response take them: made once per declaration,
    shared by every request that sends the same tools, so never changed."""

    chat: list[dict[str, Any]]
    dropped: tuple[Dropped, ...]
    namer: ToolNamer  # after naming the declared tools; each request goes on from a copy
    echo: list[dict[str, Any]]


def declared_tools_to_chat(tools: DeclaredTools) -> ChatToolset:
    """The declaration's Chat form, made on its first request."""
    form: ChatToolset | None = tools.memo.get("chat")
    if form is None:
        namer = ToolNamer()
        dropped: list[Dropped] = []
        chat = tools_to_chat(tools.decoded, namer, dropped)
        echo = [tool_echo(tool) for tool in tools.given]
        form = tools.memo["chat"] = ChatToolset(chat, tuple(dropped), namer, echo)
    return form


def tool_fields_to_chat(
    params: Params, chat: list[dict[str, Any]], namer: ToolNamer, dropped: list[Dropped]
) -> dict[str, Any]:
    """The Chat tool fields: the tools `allowed_tools` leaves, the choice, and
    `parallel_tool_calls`, which Chat takes only beside tools."""
    choice, allowed = tool_choice_to_chat(params.tool_choice, namer, dropped)
    if allowed is not None:
        chat = [tool for tool in chat if tool["function"]["name"] in allowed]
    if not chat:
        return {}
    fields: dict[str, Any] = {"tools": chat}
    if choice is not None:
        fields["tool_choice"] = choice
    if params.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = params.parallel_tool_calls
    return fields


def tool_fields_to_responses(
    params: ChatParams, body: dict[str, Any], dropped: list[Dropped]
) -> None:
    """Tools, legacy `functions` and `web_search_options` as flat Responses tools, and the
    choice; `parallel_tool_calls` passes as a shared field (see `sampling`)."""
    tools = tools_to_responses(params.tools, params.functions)
    if params.web_search_options is not None:
        tools.append(web_search_to_responses(params.web_search_options))
    if tools:
        body["tools"] = tools
    choice = tool_choice_to_responses(params.tool_choice, params.function_call, tools)
    if choice is not None:
        body["tool_choice"] = choice
    if params.tool_choice is not None and params.function_call is not None:
        dropped.append(Dropped("function_call", "'tool_choice' replaces it"))
