"""Tools, tool choice and tool calls in both shapes, including custom and namespaced tools."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from translators.context import ResponseContext, RestoredTool

_SPECIAL = re.compile(r'["\\]')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"'}
_REPLACEMENT = "\ufffd"
_WRAPPER_HEAD = re.compile(r'\s*\{\s*"[^"\\]*"\s*:\s*"')
_WRAPPER_PREFIX = re.compile(r'\s*(\{\s*("[^"\\]*("\s*(:\s*)?)?)?)?')


class CustomInputDecoder:
    """A custom tool's text, decoded as it streams from the `{"input": "..."}` function arguments.

    Text that does not open like a one-string-member JSON object is taken verbatim (a model
    that ignored the wrapper); deltas always add up to `result()`.
    """

    __slots__ = ("_head", "_parts", "_pending", "_state")

    def __init__(self) -> None:
        self._state: Literal["head", "string", "tail", "raw"] = "head"
        self._head = ""
        self._pending = ""
        self._parts: list[str] = []

    def feed(self, fragment: str) -> str:
        """Returns the newly decoded text ("" when nothing new is certain yet)."""
        state = self._state
        if state == "string":
            return self._string(fragment)
        if state == "raw":
            self._parts.append(fragment)
            return fragment
        if state == "tail":
            return ""
        self._head += fragment
        return self._open()

    def result(self) -> str:
        return "".join(self._parts)

    def _open(self) -> str:
        """Reads `{ "key" :` + opening quote; anything else switches to verbatim text."""
        head = self._head
        match = _WRAPPER_HEAD.match(head)
        if match:
            self._state = "string"
            self._head = ""
            return self._string(head[match.end() :])
        if _WRAPPER_PREFIX.fullmatch(head):
            return ""
        self._state = "raw"
        self._head = ""
        self._parts.append(head)
        return head

    def _string(self, fragment: str) -> str:
        text = self._pending + fragment if self._pending else fragment
        self._pending = ""
        out: list[str] = []
        pos, end = 0, len(text)
        while pos < end:
            found = _SPECIAL.search(text, pos)
            if found is None:
                out.append(text[pos:])
                break
            at = found.start()
            out.append(text[pos:at])
            if text[at] == '"':
                self._state = "tail"
                break
            pos = self._escape(text, at, out)
            if pos < 0:
                self._pending = text[at:]
                break
        decoded = "".join(out)
        if decoded:
            self._parts.append(decoded)
        return decoded

    @staticmethod
    def _escape(text: str, at: int, out: list[str]) -> int:
        """Decodes the escape at `at` into `out`; -1 when it continues in the next fragment."""
        end = len(text)
        if at + 1 >= end:
            return -1
        kind = text[at + 1]
        if kind != "u":
            out.append(_ESCAPES.get(kind, kind))
            return at + 2
        if at + 6 > end:
            return -1
        code = _hex(text[at + 2 : at + 6])
        if code is None:
            out.append("u")
            return at + 2
        if 0xD800 <= code < 0xDC00:
            rest = text[at + 6 : at + 12]
            if len(rest) < 6 and "\\u".startswith(rest[:2]):
                return -1
            low = _hex(rest[2:]) if rest.startswith("\\u") else None
            if low is not None and 0xDC00 <= low < 0xE000:
                out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                return at + 12
            out.append(_REPLACEMENT)
            return at + 6
        out.append(_REPLACEMENT if 0xDC00 <= code < 0xE000 else chr(code))
        return at + 6


def _hex(digits: str) -> int | None:
    if len(digits) != 4:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def custom_tool_input(arguments: str) -> str:
    """The custom tool's text from the complete upstream function arguments."""
    decoder = CustomInputDecoder()
    decoder.feed(arguments)
    return decoder.result()


def tool_item_prefix(kind: Literal["function", "custom"]) -> str:
    return "ctc" if kind == "custom" else "fc"


def tool_call_item(
    item_id: str, call_id: str, tool: RestoredTool, payload: str, status: str
) -> dict[str, Any]:
    """A `function_call` (payload: arguments) or `custom_tool_call` (payload: input) item."""
    custom = tool.kind == "custom"
    item: dict[str, Any] = {
        "id": item_id,
        "type": "custom_tool_call" if custom else "function_call",
        "status": status,
        "call_id": call_id,
        "name": tool.name,
        "input" if custom else "arguments": payload,
    }
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def chat_tool_call_to_item(
    call: Mapping[str, Any], ctx: ResponseContext, status: str
) -> dict[str, Any]:
    """One complete Chat `tool_calls` entry as the client's function or custom tool call item."""
    function = call.get("function") or {}
    tool = ctx.tools.restore(function.get("name") or "")
    arguments = function.get("arguments") or ""
    payload = custom_tool_input(arguments) if tool.kind == "custom" else arguments
    call_id = call.get("id") or ctx.new_id("call")
    return tool_call_item(ctx.new_id(tool_item_prefix(tool.kind)), call_id, tool, payload, status)
