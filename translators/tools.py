"""Tools, tool choice and tool calls in both shapes, including custom and namespaced tools."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import orjson

from diglot.translators import chat_models as chat
from diglot.translators.chat_shapes import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageToolCall,
    ChoiceDeltaToolCall,
    Custom,
)
from diglot.translators.context import Dropped, ResponseContext, RestoredTool, ToolNames
from diglot.translators.errors import RequestError, invalid_type, missing_parameter
from diglot.translators.ids import CALL_ID_PREFIX, ITEM_PREFIXES
from diglot.translators.responses_models import (
    HOSTED_TOOL_TYPES,
    CustomTool,
    FunctionTool,
    HostedTool,
    Namespace,
    Tool,
)
from diglot.translators.responses_shapes import ItemStatus, ResponseToolCall

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


def custom_arguments_to_responses(arguments: str) -> str:
    """The custom tool's text from the complete upstream function arguments."""
    decoder = CustomInputDecoder()
    decoder.feed(arguments)
    return decoder.result()


def tool_item_prefix(kind: Literal["function", "custom"]) -> str:
    """The id prefix of a call item of a tool of this kind."""
    return ITEM_PREFIXES["custom_tool_call" if kind == "custom" else "function_call"]


def tool_call_item(
    item_id: str, call_id: str, tool: RestoredTool, payload: str, status: ItemStatus
) -> ResponseToolCall:
    """A `function_call` (payload: arguments) or `custom_tool_call` (payload: input) item."""
    item: ResponseToolCall
    if tool.kind == "custom":
        item = {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": tool.name,
            "input": payload,
        }
    else:
        item = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": tool.name,
            "arguments": payload,
        }
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def chat_call_parts(call: Mapping[str, Any]) -> tuple[str, str, str]:
    """A Chat tool call's (or stream fragment's) id, function name and arguments; "" if absent."""
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    parts = (call.get("id"), function.get("name"), function.get("arguments"))
    call_id, name, arguments = (part if isinstance(part, str) else "" for part in parts)
    return call_id, name, arguments


def tool_call_to_responses(
    call: Mapping[str, Any], ctx: ResponseContext, status: ItemStatus
) -> ResponseToolCall:
    """One complete Chat `tool_calls` entry as the client's function or custom tool call item."""
    call_id, name, arguments = chat_call_parts(call)
    tool = ctx.tools.restore(name)
    payload = custom_arguments_to_responses(arguments) if tool.kind == "custom" else arguments
    call_id = call_id or ctx.new_id(CALL_ID_PREFIX)
    return tool_call_item(ctx.new_id(tool_item_prefix(tool.kind)), call_id, tool, payload, status)


def history_tool_call_to_responses(
    call: chat.FunctionToolCall | chat.CustomToolCall,
) -> dict[str, Any]:
    """An assistant's Chat tool call as an input item (the reverse of `tool_call_item_to_chat`)."""
    if isinstance(call, chat.CustomToolCall):
        custom = call.custom
        return {
            "type": "custom_tool_call",
            "call_id": call.id,
            "name": custom.name,
            "input": custom.input,
        }
    return function_call_to_responses(call.id, call.function)


def function_call_to_responses(call_id: str, function: chat.FunctionCall) -> dict[str, Any]:
    """A `function_call` input item; legacy `function_call` turns bring their own call id."""
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": function.name,
        "arguments": function.arguments,
    }


def tool_output_item(
    call_id: str, output: str | Sequence[Mapping[str, Any]], custom: bool
) -> dict[str, Any]:
    """A Chat `tool` (or legacy `function`) message as the output item answering its call."""
    kind = "custom_tool_call_output" if custom else "function_call_output"
    return {"type": kind, "call_id": call_id, "output": output}


_UPSTREAM_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_HASHED_STEM = 55
_CUSTOM_INPUT = "input"


class ToolNamer:
    """Gives each client tool an upstream function name: valid, collision-free, deterministic."""

    __slots__ = ("_declared", "_kept", "_used", "names")

    def __init__(self) -> None:
        self.names = ToolNames()
        self._declared: dict[tuple[str | None, str], str] = {}
        self._used: set[str] = set()
        self._kept: set[str] = set()

    def copy(self) -> ToolNamer:
        """A namer that goes on from this one's names without changing them."""
        twin = ToolNamer()
        twin.names.by_upstream.update(self.names.by_upstream)
        twin._declared.update(self._declared)
        twin._used.update(self._used)
        twin._kept.update(self._kept)
        return twin

    def name(self, kind: Literal["function", "custom"], name: str, namespace: str | None) -> str:
        """The upstream name of a tool (declared or only seen in history), minted on first use."""
        key = (namespace, name)
        upstream = self._declared.get(key)
        if upstream is None:
            upstream = self._mint(name, namespace)
            self._declared[key] = upstream
            if kind == "custom" or namespace is not None or upstream != name:
                self.names.by_upstream[upstream] = RestoredTool(kind, name, namespace)
        return upstream

    def find(self, name: str, namespace: str | None) -> str | None:
        """The upstream name of a declared tool, also when only its bare name is unique."""
        upstream = self._declared.get((namespace, name))
        if upstream is not None or namespace is not None:
            return upstream
        found = [up for (_, bare), up in self._declared.items() if bare == name]
        return found[0] if len(found) == 1 else None

    def reserve(self, name: str) -> None:
        """Plain tools with valid names keep them: claimed before any name is minted."""
        if _UPSTREAM_NAME.fullmatch(name):
            self._used.add(name)
            self._kept.add(name)

    def _mint(self, name: str, namespace: str | None) -> str:
        if namespace is None and name in self._kept:
            return name
        wanted = _NAME_UNSAFE.sub("_", f"{namespace}__{name}" if namespace else name)
        if _UPSTREAM_NAME.fullmatch(wanted) and wanted not in self._used:
            self._used.add(wanted)
            return wanted
        digest = hashlib.sha256(f"{namespace or ''}\0{name}".encode()).hexdigest()[:8]
        candidate = f"{wanted[:_HASHED_STEM]}_{digest}"
        count = 1
        while candidate in self._used:
            count += 1
            candidate = f"{wanted[: _HASHED_STEM - len(str(count))]}_{digest}{count}"
        self._used.add(candidate)
        return candidate


def tools_to_chat(
    tools: list[Tool], namer: ToolNamer, dropped: list[Dropped]
) -> list[dict[str, Any]]:
    """Responses tools as nested Chat function tools; hosted tools are dropped."""
    for tool in tools:
        if isinstance(tool, FunctionTool | CustomTool):
            namer.reserve(tool.name)
    out: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if isinstance(tool, Namespace):
            out.extend(_chat_tool(member, namer, tool) for member in tool.tools)
        elif isinstance(tool, HostedTool):
            dropped.append(
                Dropped(
                    f"tools[{index}]",
                    f"the hosted tool '{tool.type}' cannot run behind a Chat Completions upstream",
                )
            )
        else:
            out.append(_chat_tool(tool, namer, None))
    return out


def _chat_tool(
    tool: FunctionTool | CustomTool, namer: ToolNamer, group: Namespace | None
) -> dict[str, Any]:
    namespace = group.name if group else None
    function: dict[str, Any]
    if isinstance(tool, CustomTool):
        function = {"name": namer.name("custom", tool.name, namespace)}
        description = _custom_description(tool)
        if description:
            function["description"] = description
        function["parameters"] = _CUSTOM_PARAMETERS
    else:
        function = {"name": namer.name("function", tool.name, namespace)}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.parameters is not None:
            function["parameters"] = tool.parameters
        if tool.strict is not None:
            function["strict"] = tool.strict
    if group is not None and group.description:
        own = function.get("description")
        function["description"] = f"{group.description}\n\n{own}" if own else group.description
    return {"type": "function", "function": function}


_CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        _CUSTOM_INPUT: {"type": "string", "description": "The tool's whole input, as raw text."}
    },
    "required": [_CUSTOM_INPUT],
    "additionalProperties": False,
}


def _custom_description(tool: CustomTool) -> str:
    """A freeform tool's text, telling the model its input is one string and its grammar."""
    text = tool.description or ""
    grammar = tool.format
    if grammar is not None and grammar.type == "grammar" and grammar.definition:
        syntax = grammar.syntax or "lark"
        note = (
            f"The `{_CUSTOM_INPUT}` argument must be text matching this {syntax} grammar:\n"
            f"{grammar.definition}"
        )
        text = f"{text}\n\n{note}" if text else note
    return text


def tools_to_responses(
    tools: list[chat.ChatFunctionTool | chat.ChatCustomTool] | None,
    functions: list[chat.FunctionDefinition] | None,
) -> list[dict[str, Any]]:
    """Chat's nested tools and legacy `functions` as flat Responses tools."""
    out = [
        _responses_function(tool.function)
        if isinstance(tool, chat.ChatFunctionTool)
        else _responses_custom(tool.custom)
        for tool in tools or ()
    ]
    out.extend(_responses_function(function) for function in functions or ())
    return out


def _responses_function(function: chat.FunctionDefinition) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function", "name": function.name}
    if function.description is not None:
        tool["description"] = function.description
    tool["parameters"] = function.parameters
    # Chat functions are lax unless asked; Responses would make them strict by default.
    tool["strict"] = bool(function.strict)
    return tool


def _responses_custom(custom: chat.CustomDefinition) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "custom", "name": custom.name}
    if custom.description is not None:
        tool["description"] = custom.description
    fmt = custom.format
    if isinstance(fmt, chat.GrammarInput):
        grammar = fmt.grammar
        tool["format"] = {
            "type": "grammar",
            "syntax": grammar.syntax,
            "definition": grammar.definition,
        }
    elif fmt is not None:
        tool["format"] = {"type": "text"}
    return tool


def web_search_to_responses(options: chat.WebSearchOptions) -> dict[str, Any]:
    """Chat's `web_search_options` as the Responses `web_search` tool they configure."""
    tool: dict[str, Any] = {"type": "web_search"}
    if options.search_context_size is not None:
        tool["search_context_size"] = options.search_context_size
    location = options.user_location
    if location is not None:
        approximate = msgspec.to_builtins(location.approximate)
        tool["user_location"] = {"type": location.type, **approximate}
    return tool


def chat_tool_call(
    call_id: str, name: str, arguments: str
) -> ChatCompletionMessageFunctionToolCall:
    """One entry of an assistant message's `tool_calls`."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_CALL_ITEMS = ("function_call", "custom_tool_call")  # a tuple: safe to test any value


def tool_call_item_to_chat(
    item: Mapping[str, Any], payload: str | None = None
) -> ChatCompletionMessageToolCall:
    """A `function_call` or `custom_tool_call` output item as a Chat tool call.

    `payload` replaces the item's arguments or input: "" gives the first delta of a stream.
    """
    call_id, name = item.get("call_id") or item.get("id"), item.get("name")
    call_id = call_id if isinstance(call_id, str) else ""
    name = name if isinstance(name, str) else ""
    if item.get("type") == "custom_tool_call":
        text = item.get("input") if payload is None else payload
        custom: Custom = {"name": name, "input": text if isinstance(text, str) else ""}
        return {"id": call_id, "type": "custom", "custom": custom}
    arguments = item.get("arguments") if payload is None else payload
    return chat_tool_call(call_id, name, arguments if isinstance(arguments, str) else "")


def tool_call_delta(index: int, custom: bool, fragment: str) -> ChoiceDeltaToolCall:
    """A stream delta adding `fragment` to the arguments or custom input of call `index`."""
    if custom:
        return {"index": index, "custom": {"input": fragment}}
    return {"index": index, "function": {"arguments": fragment}}


def custom_input_to_chat(text: str) -> str:
    """A custom tool's input as the one-string-argument JSON its function stand-in takes."""
    return orjson.dumps({_CUSTOM_INPUT: text}).decode()


_CHOICE_MODES = frozenset({"none", "auto", "required"})


def tool_choice_to_chat(
    choice: str | dict[str, Any] | None, namer: ToolNamer, dropped: list[Dropped]
) -> tuple[str | dict[str, Any] | None, set[str] | None]:
    """Responses `tool_choice` as Chat's, plus the upstream names `allowed_tools` keeps."""
    if choice is None:
        return None, None
    if isinstance(choice, str):
        if choice in _CHOICE_MODES:
            return choice, None
        raise RequestError(
            f"Invalid value for 'tool_choice': {choice!r}; expected 'none', 'auto' or 'required'.",
            "tool_choice",
        )
    kind = choice.get("type")
    if kind in ("function", "custom"):
        return {
            "type": "function",
            "function": {"name": _chosen(choice, namer, "tool_choice")},
        }, None
    if kind == "allowed_tools":
        return _allowed_tools(choice, namer, dropped)
    if not isinstance(kind, str) or kind not in HOSTED_TOOL_TYPES:
        raise RequestError(
            f"Invalid value for 'tool_choice.type': {kind!r} is not a tool choice.",
            "tool_choice.type",
        )
    dropped.append(
        Dropped("tool_choice", f"the tool choice {kind!r} names a tool a Chat upstream cannot run")
    )
    return None, None


def _chosen(choice: dict[str, Any], namer: ToolNamer, path: str) -> str:
    name, namespace = choice.get("name"), choice.get("namespace")
    if name is None:
        raise missing_parameter(f"{path}.name")
    for field, value in (("name", name), ("namespace", namespace)):
        if not (value is None or isinstance(value, str)):
            raise invalid_type(f"{path}.{field}", "a string")
    upstream = namer.find(name, namespace)
    if upstream is None:
        raise RequestError(
            f"Tool choice '{name}' is not one of the tools in 'tools'.", f"{path}.name"
        )
    return upstream


def _allowed_tools(
    choice: dict[str, Any], namer: ToolNamer, dropped: list[Dropped]
) -> tuple[str, set[str]]:
    """Chat backends rarely know `allowed_tools`: offer only those tools, with the mode."""
    mode, tools = choice.get("mode"), choice.get("tools")
    if mode not in ("auto", "required"):
        raise RequestError(
            "Invalid value for 'tool_choice.mode': expected 'auto' or 'required'.",
            "tool_choice.mode",
        )
    if not isinstance(tools, list):
        raise invalid_type("tool_choice.tools", "an array")
    allowed: set[str] = set()
    for index, tool in enumerate(tools):
        path = f"tool_choice.tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(path, "an object")
        if tool.get("type") in ("function", "custom"):
            allowed.add(_chosen(tool, namer, path))
        else:
            dropped.append(Dropped(path, f"the hosted tool {tool.get('type')!r} is not offered"))
    return mode, allowed


def tool_choice_to_responses(
    choice: chat.ToolChoice | None,
    function_call: Literal["none", "auto"] | chat.ToolName | None,
    tools: list[dict[str, Any]],
) -> str | dict[str, Any] | None:
    """Chat's `tool_choice` (else legacy `function_call`) as Responses' flat tool choice."""
    declared = {(tool["type"], tool.get("name")) for tool in tools}
    if choice is None:
        if isinstance(function_call, chat.ToolName):
            return _named("function", function_call.name, declared, "function_call.name")
        return function_call
    if isinstance(choice, str):
        return choice
    if isinstance(choice, chat.AllowedToolsChoice):
        allowed = choice.allowed_tools
        named = [
            _named_choice(tool, declared, f"tool_choice.allowed_tools.tools[{index}]")
            for index, tool in enumerate(allowed.tools)
        ]
        return {"type": "allowed_tools", "mode": allowed.mode, "tools": named}
    return _named_choice(choice, declared, "tool_choice")


def _named_choice(
    choice: chat.FunctionChoice | chat.CustomChoice, declared: set[tuple[str, Any]], path: str
) -> dict[str, Any]:
    if isinstance(choice, chat.FunctionChoice):
        return _named("function", choice.function.name, declared, f"{path}.function.name")
    return _named("custom", choice.custom.name, declared, f"{path}.custom.name")


def _named(kind: str, name: str, declared: set[tuple[str, Any]], path: str) -> dict[str, Any]:
    if (kind, name) not in declared:
        raise RequestError(f"Tool choice '{name}' is not one of the {kind} tools in 'tools'.", path)
    return {"type": kind, "name": name}


def tool_echo(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the response repeats it: as given, with a function's nullable keys present."""
    if tool.get("type") != "function" or "name" not in tool:
        return tool
    return {"description": None, "parameters": None, "strict": None, **tool}
