"""Tools sent again in the same bytes are decoded and translated once, and shared safely."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from diglot.translators.context import Options, RestoredTool
from diglot.translators.errors import RequestError
from diglot.translators.requests import ChatCall, request_to_chat
from diglot.translators.responses_models import ToolShelf, decode_responses_request

TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files."},
    {"type": "web_search"},
]
CALL_TO_UNDECLARED = {
    "type": "function_call",
    "call_id": "c1",
    "name": "run",
    "namespace": "mcp.shell",
    "arguments": "{}",
}


def body(input_items: str | list[dict[str, Any]], tools: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"model": "m", "input": input_items, "tools": tools})


def translate(raw: bytes, shelf: ToolShelf | None) -> ChatCall:
    request = decode_responses_request(raw, shelf)
    return request_to_chat(request, Options(), now=0, new_id=lambda kind: f"{kind}_1")


def test_the_same_tools_are_decoded_once_and_translate_as_if_fresh() -> None:
    shelf = ToolShelf()
    first = decode_responses_request(body("hi", TOOLS), shelf)
    again = decode_responses_request(body("bye", TOOLS), shelf)
    assert again.tools is first.tools
    for raw in (body("hi", TOOLS), body("bye", TOOLS)):
        shelved, fresh = translate(raw, shelf), translate(raw, None)
        assert shelved.body == fresh.body
        assert shelved.context.echo == fresh.context.echo
        assert shelved.context.tools == fresh.context.tools
        assert shelved.dropped == fresh.dropped == fresh.dropped[:1]


def test_names_minted_for_one_request_stay_with_it() -> None:
    shelf = ToolShelf()
    history = [{"type": "message", "role": "user", "content": "go"}, CALL_TO_UNDECLARED]
    shelved = decode_responses_request(body(history, TOOLS), shelf).tools
    assert decode_responses_request(body("hi", TOOLS), shelf).tools is shelved
    with_call = translate(body(history, TOOLS), shelf)
    minted = with_call.body["messages"][1]["tool_calls"][0]["function"]["name"]
    assert with_call.context.tools.restore(minted) == RestoredTool("function", "run", "mcp.shell")
    without = translate(body("hi", TOOLS), shelf)
    assert minted not in without.context.tools.by_upstream
    assert [tool["function"]["name"] for tool in without.body["tools"]] == ["lookup", "apply_patch"]
    assert len(without.dropped) == 1


def test_the_least_recently_used_tools_leave_a_full_shelf() -> None:
    shelf = ToolShelf(size=2)
    arrays = [[{"type": "function", "name": f"tool_{n}"}] for n in range(3)]
    first, second = (decode_responses_request(body("hi", a), shelf).tools for a in arrays[:2])
    assert decode_responses_request(body("hi", arrays[0]), shelf).tools is first  # used again
    decode_responses_request(body("hi", arrays[2]), shelf)  # the second one leaves
    assert decode_responses_request(body("hi", arrays[0]), shelf).tools is first
    assert decode_responses_request(body("hi", arrays[1]), shelf).tools is not second


def test_tools_that_are_no_list_of_objects_are_refused_and_not_shelved() -> None:
    shelf = ToolShelf()
    for tools in ("lookup", [1], [{"type": "function"}]):
        with pytest.raises(RequestError) as caught:
            decode_responses_request(
                orjson.dumps({"model": "m", "input": "hi", "tools": tools}), shelf
            )
        assert caught.value.param is not None and caught.value.param.startswith("tools")
    assert shelf.get(orjson.dumps([{"type": "function"}])) is None


def test_tools_too_large_to_keep_are_decoded_each_time() -> None:
    shelf = ToolShelf()
    described = [{"type": "function", "name": "big", "description": "x" * 70_000}]
    first = decode_responses_request(body("hi", described), shelf).tools
    assert decode_responses_request(body("hi", described), shelf).tools is not first
    assert decode_responses_request(body("hi", described), shelf).tools.given == described
