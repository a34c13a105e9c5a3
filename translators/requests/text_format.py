"""The output format: Responses `text.format` and `text.verbosity` <-> Chat `response_format` and
`verbosity` (a Chat `json_schema` nests what Responses holds flat)."""

from __future__ import annotations

from typing import Any

import msgspec

from diglot.translators.chat_models import ChatParams, JSONObjectFormat, JSONSchemaFormat
from diglot.translators.errors import missing_parameter
from diglot.translators.responses_models import TextConfig


def text_to_chat(text: TextConfig | None, body: dict[str, Any]) -> None:
    """`text.format` -> `response_format`, `text.verbosity` -> `verbosity`."""
    if text is None:
        return
    fmt = text.format
    if fmt is not None and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.name is None or fmt.schema is None:
            raise missing_parameter("text.format." + ("name" if fmt.name is None else "schema"))
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if text.verbosity is not None:
        body["verbosity"] = text.verbosity


def text_to_responses(params: ChatParams, body: dict[str, Any]) -> None:
    """`response_format` -> `text.format` (json_schema flattened), `verbosity` ->
    `text.verbosity`."""
    text: dict[str, Any] = {}
    fmt = params.response_format
    if isinstance(fmt, JSONSchemaFormat):
        spec = fmt.json_schema
        if spec.schema is None:
            raise missing_parameter("response_format.json_schema.schema")
        text["format"] = {"type": "json_schema", "name": spec.name, "schema": spec.schema}
        if spec.description is not None:
            text["format"]["description"] = spec.description
        if spec.strict is not None:
            text["format"]["strict"] = spec.strict
    elif isinstance(fmt, JSONObjectFormat):
        text["format"] = {"type": "json_object"}
    elif fmt is not None:
        text["format"] = {"type": "text"}
    if params.verbosity is not None:
        text["verbosity"] = params.verbosity
    if text:
        body["text"] = text


def text_echo(text: TextConfig | None) -> dict[str, Any]:
    """The `text` setting a response repeats: the format as given, else plain text."""
    echoed: dict[str, Any] = {"format": {"type": "text"}}
    if text is not None:
        if text.format is not None:
            echoed["format"] = msgspec.to_builtins(text.format)
        if text.verbosity is not None:
            echoed["verbosity"] = text.verbosity
    return echoed
