"""Shape checks for tests: openai SDK types (pydantic, strict) plus the Open Responses schema.

The Open Responses schema does not define every item and tool the OpenAI API has (custom tool
calls, custom and namespace tools) nor the `response.reasoning_text.*` and
`response.custom_tool_call_input.*` events; those parts are checked by the SDK types alone, the
rest by both. Likewise for request bodies: its `CreateResponseBody` knows no `json_object`
format, `input_audio` parts, custom or hosted tools and their choices, nor raw reasoning text in
input reasoning items.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import (
    Response,
    ResponseInputAudioParam,
    ResponsesServerEvent,
    ResponseStreamEvent,
)
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)
from pydantic import BaseModel, TypeAdapter

from diglot.translators.errors import RequestError

# The Open Responses specification's schema, kept beside the tests (see openresponses/README.md).
SCHEMA_PATH = Path(__file__).resolve().parent / "openresponses" / "openapi.json"
SCHEMA_VERSION = "2026-04-24"

# Keys the SDK models do not declare but the API (or the Open Responses schema) does send.
_UNDECLARED_OK = {
    ("Response", "presence_penalty"),
    ("Response", "frequency_penalty"),
    ("Response", "store"),
    ("ResponseCustomToolCall", "status"),
    ("Logprob", "bytes"),
    ("LogprobTopLogprob", "bytes"),
    # The reasoning fields of DeepSeek-, vLLM- and OpenRouter-style chat backends.
    ("ChatCompletionMessage", "reasoning_content"),
    ("ChatCompletionMessage", "reasoning"),
    ("ChoiceDelta", "reasoning_content"),
    ("ChoiceDelta", "reasoning"),
}
# OpenAI event names whose Open Responses twin has the same fields under another name.
_SPEC_TWINS = {
    "response.reasoning_text.delta": "response.reasoning.delta",
    "response.reasoning_text.done": "response.reasoning.done",
}
_LIFECYCLE = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@functools.cache
def open_responses_schema() -> dict[str, Any]:
    """The whole OpenAPI document, read once."""
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return document


def _components() -> dict[str, Any]:
    components: dict[str, Any] = open_responses_schema()["components"]
    return components


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _components()}
    return Draft202012Validator(schema)


def _enum_values(schema: dict[str, Any], prop: str) -> list[str]:
    values: list[str] = schema.get("properties", {}).get(prop, {}).get("enum", [])
    return values


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Event `type` -> the schema defining it."""
    found: dict[str, str] = {}
    for name, schema in _components()["schemas"].items():
        if name.endswith("StreamingEvent"):
            for value in _enum_values(schema, "type"):
                found[value] = name
    return found


@functools.cache
def _spec_types(union: str) -> frozenset[str]:
    """The `type` values a oneOf schema (ItemField, Tool) covers."""
    schemas = _components()["schemas"]
    types: set[str] = set()
    for ref in schemas[union]["oneOf"]:
        types.update(_enum_values(schemas[ref["$ref"].rsplit("/", 1)[1]], "type"))
    return frozenset(types)


def _spec_response(response: dict[str, Any]) -> dict[str, Any]:
    """The response with the items and tools the Open Responses schema does not define left out."""
    view = dict(response)
    items = _spec_types("ItemField")
    view["output"] = [item for item in response.get("output", []) if item.get("type") in items]
    if isinstance(response.get("tools"), list):
        tools = _spec_types("Tool")
        view["tools"] = [tool for tool in response["tools"] if tool.get("type") in tools]
    return view


def _schema_errors(schema_name: str, obj: Any) -> list[str]:
    errors = sorted(_validator(schema_name).iter_errors(obj), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def _undeclared(model: Any, path: str = "") -> Iterator[str]:
    """Keys the SDK model accepted only as extras (typos, fields the API never sends)."""
    if isinstance(model, BaseModel):
        for key in model.model_extra or {}:
            if (type(model).__name__, key) not in _UNDECLARED_OK:
                yield f"{path}/{key} ({type(model).__name__})"
        for name in type(model).model_fields:
            yield from _undeclared(getattr(model, name), f"{path}/{name}")
    elif isinstance(model, list):
        for index, value in enumerate(model):
            yield from _undeclared(value, f"{path}/{index}")


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _sdk(kind: Any, obj: Any) -> Any:
    parsed = _adapter(kind).validate_python(obj, strict=True)
    unknown = list(_undeclared(parsed))
    assert not unknown, f"keys the openai SDK does not know: {unknown}"
    return parsed


def assert_valid_response(obj: dict[str, Any]) -> None:
    """A Responses `response` object: SDK `Response` and Open Responses `ResponseResource`."""
    _sdk(Response, obj)
    errors = _schema_errors("ResponseResource", _spec_response(obj))
    assert not errors, f"Open Responses ResponseResource: {errors}"


def assert_valid_stream_event(event: dict[str, Any]) -> None:
    """One Responses stream event: SDK `ResponseStreamEvent` and its Open Responses schema."""
    _sdk(ResponseStreamEvent, event)
    kind = event["type"]
    view = event
    if kind in _LIFECYCLE:
        view = {**event, "response": _spec_response(event["response"])}
    elif kind in ("response.output_item.added", "response.output_item.done"):
        if event["item"]["type"] not in _spec_types("ItemField"):
            view = {**event, "item": None}
    elif kind in _SPEC_TWINS:
        kind = _SPEC_TWINS[kind]
        view = {**event, "type": kind}
    schema = _event_schemas().get(kind)
    if schema is None:
        return
    errors = _schema_errors(schema, view)
    assert not errors, f"Open Responses {schema}: {errors}"


def assert_valid_socket_event(event: dict[str, Any]) -> None:
    """One WebSocket-mode frame: SDK `ResponsesServerEvent`; a stream event is also checked as
    one (its `stream_id` aside, which only WebSocket mode has)."""
    _sdk(ResponsesServerEvent, event)
    if event["type"] != "error":
        assert_valid_stream_event({k: v for k, v in event.items() if k != "stream_id"})


def assert_valid_stream(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A whole event stream: each event valid, the grammar kept; returns the terminal response.

    Checks sequence numbers 0, 1, 2…, created/in_progress first, exactly one terminal event
    last, every item announced before its events and closed before a completed response, and
    that the openai SDK's own stream accumulator accepts the stream.
    """
    events = list(events)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in _TERMINAL
    assert not any(e["type"] in _TERMINAL for e in events[:-1])
    items: dict[int, str] = {}
    done: set[int] = set()
    for event in events:
        assert_valid_stream_event(event)
        state.handle_event(_adapter(ResponseStreamEvent).validate_python(event))
        if event["type"] == "response.output_item.added":
            assert event["output_index"] == len(items), "output_index must grow by one"
            items[event["output_index"]] = event["item"]["id"]
        elif "output_index" in event:
            index = event["output_index"]
            assert index in items and index not in done, f"event outside its item: {event}"
            if "item_id" in event:
                assert event["item_id"] == items[index]
            if event["type"] == "response.output_item.done":
                assert event["item"]["id"] == items[index]
                done.add(index)
    response: dict[str, Any] = events[-1]["response"]
    if response["status"] != "failed":
        assert done == set(items), f"every item is closed before {events[-1]['type']}"
    assert [item["id"] for item in response["output"]] == [items[i] for i in sorted(items)]
    return response


def materialize(value: Any) -> Any:
    """pydantic validates `Iterable` fields lazily: walk them so every part is checked."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    return [materialize(item) for item in value]


@functools.cache
def _part_types() -> frozenset[str]:
    """The content part `type`s the Open Responses request schema defines."""
    schemas = _components()["schemas"]
    return frozenset(
        value
        for name, schema in schemas.items()
        if "ContentParam" in name
        for value in _enum_values(schema, "type")
    )


def _spec_create_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request body with what the Open Responses schema does not define left out."""
    view = dict(body)
    if isinstance(body.get("input"), list):
        items, parts = _spec_types("ItemParam"), _part_types()
        view["input"] = []
        for item in body["input"]:
            if item.get("type") not in items:
                continue
            item = dict(item)
            if item["type"] == "reasoning":
                item.pop("content", None)
            if isinstance(item.get("content"), list):
                item["content"] = [p for p in item["content"] if p["type"] in parts]
            view["input"].append(item)
    tools = _spec_types("ResponsesToolParam")
    if isinstance(body.get("tools"), list):
        view["tools"] = [tool for tool in body["tools"] if tool.get("type") in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        allowed = [tool for tool in choice["tools"] if tool["type"] in tools]
        view["tool_choice"] = {**choice, "tools": allowed}
        if not allowed:
            del view["tool_choice"]
    elif isinstance(choice, dict) and choice["type"] not in tools:
        del view["tool_choice"]
    fmt = body.get("text", {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        view["text"] = {key: value for key, value in body["text"].items() if key != "format"}
    return view


def _sdk_create_body(body: dict[str, Any]) -> dict[str, Any]:
    """The SDK's message content lists know no `input_audio` parts: each is checked alone."""
    if not isinstance(body.get("input"), list):
        return body
    items = []
    for item in body["input"]:
        if item.get("type") == "message" and isinstance(item.get("content"), list):
            for part in item["content"]:
                if part["type"] == "input_audio":
                    _adapter(ResponseInputAudioParam).validate_python(part, strict=True)
            content = [part for part in item["content"] if part["type"] != "input_audio"]
            item = {**item, "content": content}
        items.append(item)
    return {**body, "input": items}


def assert_valid_create_body(body: dict[str, Any]) -> None:
    """A Responses request: SDK `ResponseCreateParams*` and Open Responses `CreateResponseBody`."""
    kind = ResponseCreateParamsStreaming if body.get("stream") else ResponseCreateParamsNonStreaming
    materialize(_adapter(kind).validate_python(_sdk_create_body(body)))
    errors = _schema_errors("CreateResponseBody", _spec_create_body(body))
    assert not errors, f"Open Responses CreateResponseBody: {errors}"


def assert_refusal(error: RequestError, param: str | None, code: str | None) -> None:
    """A 400 in OpenAI's error shape naming `param` (and `code`, when one is expected)."""
    assert error.status == 400
    assert error.param == param
    if code is not None:
        assert error.code == code
    envelope = error.body()["error"]
    assert envelope["type"] == "invalid_request_error"
    assert envelope["param"] == param
    assert envelope["message"]


def assert_valid_chat_completion(obj: dict[str, Any]) -> None:
    _sdk(ChatCompletion, obj)


def assert_valid_chat_chunk(obj: dict[str, Any]) -> None:
    """A chunk; custom tool call deltas, which the SDK types know only whole, are checked here."""
    _sdk(ChatCompletionChunk, _chunk_without_custom_calls(obj))


def _chunk_without_custom_calls(chunk: dict[str, Any]) -> dict[str, Any]:
    choices = []
    for choice in chunk.get("choices", []):
        calls = choice.get("delta", {}).get("tool_calls") or []
        if any("custom" in call for call in calls):
            for call in calls:
                if "custom" in call:
                    assert set(call) <= {"index", "id", "type", "custom"}, call
                    assert call.get("type", "custom") == "custom", call
                    assert set(call["custom"]) <= {"name", "input"}, call
                    assert all(isinstance(v, str) for v in call["custom"].values()), call
            kept = [{"index": c["index"]} if "custom" in c else c for c in calls]
            choice = {**choice, "delta": {**choice["delta"], "tool_calls": kept}}
        choices.append(choice)
    return {**chunk, "choices": choices}


def assert_valid_chat_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A chunk stream as `chat.completions.stream()` reads it; returns the accumulated completion.

    Each chunk valid, all sharing id, created and model, and the SDK's own accumulator (fed
    as the SDK parses chunks, leniently) accepting the stream, unless it holds custom tool call
    deltas, which that accumulator cannot read (it expects function calls only). Choices must
    start at index 0 there, as the accumulator appends them in order.
    """
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    same = ("id", "object", "created", "model", "system_fingerprint", "service_tier")
    readable = True
    for chunk in chunks:
        assert_valid_chat_chunk(chunk)
        assert [chunk.get(k) for k in same] == [chunks[0].get(k) for k in same], chunk
        readable = readable and chunk == _chunk_without_custom_calls(chunk)
    if not readable:
        return {}
    for chunk in chunks:
        list(state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=chunk)))
    snapshot: dict[str, Any] = state.current_completion_snapshot.model_dump(mode="json")
    return snapshot
