"""One JSON encoder for everything diglot writes: orjson's speed, any integer a client sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson


def dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """orjson refuses integers beyond 64 bits, which clients may put in schemas and extras."""
    try:
        return orjson.dumps(obj, default=default)
    except TypeError:
        return msgspec.json.encode(obj, enc_hook=default)
