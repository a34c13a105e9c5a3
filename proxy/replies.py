"""JSON answers, encoded with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from diglot.proxy.jsonenc import dumps


def json_response(
    body: Mapping[str, Any] | bytes, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """orjson-encoded JSON (or JSON already encoded); aiohttp's would use the stdlib encoder."""
    encoded = body if isinstance(body, bytes) else dumps(body)
    return web.Response(
        body=encoded, status=status, content_type="application/json", headers=headers
    )
