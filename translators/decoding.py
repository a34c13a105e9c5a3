"""What both request decoders share: bounded scalar types, JSON loading and field-naming errors."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from diglot.translators.errors import RequestError, missing_parameter

Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the 400 a client gets for anything else."""
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise RequestError("The request body is not valid JSON.", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.", None, "invalid_type")
    return data


def validation_error(message: str, prefix: str) -> RequestError:
    """msgspec's `... - at `$.a[0].b`` as an OpenAI error naming `prefix.a[0].b`."""
    detail, _, where = message.partition(" - at `")
    path = (prefix + where.rstrip("`")[1:] if where else prefix).lstrip(".")
    path = path.replace("[...]", "")
    if detail.startswith("Object missing required field `"):
        field = detail[len("Object missing required field `") : -1]
        path = f"{path}.{field}" if path else field
        return missing_parameter(path)
    if detail.startswith("Expected `") and ", got `" in detail:
        return RequestError(
            f"Invalid type for '{path}': {detail[0].lower()}{detail[1:]}.", path, "invalid_type"
        )
    detail = detail[0].lower() + detail[1:]
    return RequestError(f"Invalid value for '{path}': {detail}.", path or None, "invalid_value")
