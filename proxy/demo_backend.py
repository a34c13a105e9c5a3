"""The backend `diglot demo` runs: Chat Completions only, answering like a small reasoning model.

Each answer begins with a sentence of reasoning (`reasoning_content`); a request that declares a
function tool gets a call to it, with arguments made from its schema and the user's words; once
the tool's result comes back, the answer is text that uses it. Streams go a word at a time at a
pace a person can follow, so the demo shows everything diglot translates as it happens.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

MODEL = "diglot-demo"
PACE = 0.04  # seconds between streamed pieces: slow enough to watch, quick enough to wait for
_PACE = web.AppKey("pace", float)
_LINKING_WORDS = frozenset({"about", "at", "for", "from", "in", "near", "of", "on", "to"})
_DEEPEST_SCHEMA = 8  # nesting followed when making up arguments; deeper values are plain words
_ARGUMENT_PIECE = 12  # characters of a tool call's arguments per streamed chunk


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as Chat Completions carries it


@dataclass(frozen=True)
class Answer:
    """What the model says: always some reasoning, then text or a tool call."""

    reasoning: str
    content: str | None = None
    tool_call: ToolCall | None = None


def answer(body: dict[str, Any]) -> Answer:
    """What the model says to a request: a tool's result passed on, a tool call, or an echo."""
    messages = _messages(body)
    said = _last_user_text(messages) or "nothing"
    if messages and messages[-1].get("role") == "tool":
        name = _called_tool(messages, messages[-1].get("tool_call_id"))
        return Answer(
            reasoning=f"{name} has answered, so I can pass on what it said.",
            content=f"According to {name}: {_text(messages[-1].get('content'))}",
        )
    tool = _tool_to_call(body)
    if tool is not None:
        name = str(tool.get("name") or "tool")
        arguments = _arguments(tool.get("parameters"), _subject(said), 0)
        return Answer(
            reasoning=f'The user asked "{said}". The {name} tool can tell, so I will call it.',
            tool_call=ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=name,
                arguments=json.dumps(arguments, ensure_ascii=False),
            ),
        )
    return Answer(
        reasoning=f'The user said "{said}". Saying it back is the whole job here.',
        content=f"Hello from the diglot demo backend! You said: {said}",
    )


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _text(content: object) -> str:
    """A message's text, from a string or from content parts."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(part for part in parts if isinstance(part, str)).strip()
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _called_tool(messages: list[dict[str, Any]], call_id: object) -> str:
    """The name of the function the assistant called with this id."""
    for message in reversed(messages):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and call.get("id") == call_id:
                function = call.get("function")
                name = function.get("name") if isinstance(function, dict) else None
                return name if isinstance(name, str) else "the tool"
    return "the tool"


def _tool_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool_choice names, else the first function declared (none for "none")."""
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    tools = body.get("tools")
    functions = [
        tool["function"]
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), dict)
    ]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        named = choice["function"].get("name")
        functions = [f for f in functions if f.get("name") == named] or functions
    return functions[0] if functions else None


def _subject(said: str) -> str:
    """The words after the last linking word ("the weather in Paris?" -> "Paris"), else all."""
    words = said.rstrip("?!. ").split()
    for index in range(len(words) - 2, -1, -1):
        if words[index].lower() in _LINKING_WORDS:
            return " ".join(words[index + 1 :])
    return " ".join(words) or "something"


def _arguments(schema: object, subject: str, depth: int) -> dict[str, Any]:
    """An object for a JSON schema: its required properties (all, when none is) filled in."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required") if isinstance(schema, dict) else None
    listed = required if isinstance(required, list) else []
    names = [name for name in listed if isinstance(name, str) and name in properties]
    return {name: _value(properties[name], subject, depth + 1) for name in names or properties}


def _value(schema: object, subject: str, depth: int) -> Any:
    """A plausible value for a JSON schema: its default, its first choice, or one of its type."""
    if not isinstance(schema, dict) or depth > _DEEPEST_SCHEMA:
        return subject
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list) and options:
        return _value(options[0], subject, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    simple = {"integer": 1, "number": 1.5, "boolean": True, "null": None}
    if isinstance(kind, str) and kind in simple:
        return simple[kind]
    if kind == "array":
        return [_value(schema.get("items"), subject, depth + 1)]
    if kind == "object":
        return _arguments(schema, subject, depth)
    return subject


def usage(body: dict[str, Any], reply: Answer) -> dict[str, Any]:
    """Token counts of the right shape: four bytes of prompt or of arguments, or a word, a token."""
    prompt = len(orjson.dumps(body.get("messages"))) // 4
    reasoning = len(reply.reasoning.split())
    arguments = reply.tool_call.arguments if reply.tool_call is not None else ""
    completion = reasoning + len((reply.content or "").split()) + len(arguments) // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def completion(body: dict[str, Any], reply: Answer, ident: str, created: int) -> dict[str, Any]:
    """The whole answer as one chat.completion."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content,
        "reasoning_content": reply.reasoning,
    }
    if reply.tool_call is not None:
        message["tool_calls"] = [_tool_call(reply.tool_call)]
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": usage(body, reply),
    }


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _finish(reply: Answer) -> str:
    return "tool_calls" if reply.tool_call is not None else "stop"


def deltas(reply: Answer) -> Iterator[dict[str, Any]]:
    """The answer as a stream's deltas: reasoning and text a word at a time, arguments in pieces."""
    yield {"role": "assistant", "content": ""}
    for word in _words(reply.reasoning):
        yield {"reasoning_content": word}
    for word in _words(reply.content or ""):
        yield {"content": word}
    call = reply.tool_call
    if call is not None:
        header = {"index": 0, "id": call.id, "type": "function"}
        yield {"tool_calls": [{**header, "function": {"name": call.name, "arguments": ""}}]}
        for start in range(0, len(call.arguments), _ARGUMENT_PIECE):
            piece = call.arguments[start : start + _ARGUMENT_PIECE]
            yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}


def _words(text: str) -> list[str]:
    """Words with the space before each kept, so that joining them gives the text back."""
    if not text:
        return []
    first, *rest = text.split(" ")
    return [first, *(" " + word for word in rest)]


def _chunk(ident: str, created: int, choices: list[dict[str, Any]], **extra: Any) -> bytes:
    chunk = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": choices,
        **extra,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def _stream(
    request: web.Request, body: dict[str, Any], reply: Answer, ident: str, created: int
) -> web.StreamResponse:
    pace = request.app[_PACE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for delta in deltas(reply):
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        await response.write(_chunk(ident, created, [choice]))
        if pace:
            await asyncio.sleep(pace)
    last = {"index": 0, "delta": {}, "finish_reason": _finish(reply)}
    await response.write(_chunk(ident, created, [last]))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        await response.write(_chunk(ident, created, [], usage=usage(body, reply)))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: the answer whole, or streamed when asked."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        error = {
            "error": {
                "message": "Body must be a JSON object.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        return web.Response(body=orjson.dumps(error), status=400, content_type="application/json")
    reply, created, ident = answer(body), int(time.time()), f"chatcmpl-demo{time.time_ns()}"
    if body.get("stream"):
        return await _stream(request, body, reply, ident, created)
    whole = completion(body, reply, ident, created)
    return web.Response(body=orjson.dumps(whole), content_type="application/json")


async def list_models(_: web.Request) -> web.Response:
    models = {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "diglot"}],
    }
    return web.Response(body=orjson.dumps(models), content_type="application/json")


def demo_backend(pace: float = PACE) -> web.Application:
    """The chat-only backend: /v1/chat/completions and /v1/models."""
    app = web.Application()
    app[_PACE] = pace
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    return app
