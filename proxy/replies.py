"""JSON answers, and upstream errors re-shaped as OpenAI errors for the client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from diglot.proxy.jsonenc import dumps
from diglot.proxy.upstream import REQUEST_ID, rate_limit_headers, relay_headers
from diglot.translators.errors import is_openai_error, upstream_error_body

_MAX_ERROR_BODY = 1024 * 1024


def json_response(
    body: Mapping[str, Any] | bytes, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """orjson-encoded JSON (or JSON already encoded); aiohttp's would use the stdlib encoder."""
    encoded = body if isinstance(body, bytes) else dumps(body)
    return web.Response(
        body=encoded, status=status, content_type="application/json", headers=headers
    )


async def upstream_error_response(
    upstream: aiohttp.ClientResponse, request_id: str
) -> web.Response:
    """Same status, an OpenAI error body, Retry-After and x-ratelimit-* kept."""
    _, payload = await _error_of(upstream)
    return _normalised(upstream, payload, request_id)


async def passthrough_error_response(
    upstream: aiohttp.ClientResponse, request_id: str
) -> web.Response:
    """An error already in OpenAI's shape goes out byte for byte; any other is normalised."""
    raw, payload = await _error_of(upstream)
    if not is_openai_error(payload):
        return _normalised(upstream, payload, request_id)
    headers = relay_headers(upstream.headers)
    headers.popall("Content-Length", None)  # aiohttp sets it from the body
    headers[REQUEST_ID] = request_id
    return web.Response(body=raw, status=upstream.status, reason=upstream.reason, headers=headers)


async def _error_of(upstream: aiohttp.ClientResponse) -> tuple[bytes, object]:
    """The error body's bytes (bounded) and their JSON, or the bytes again when not JSON."""
    try:
        raw = await upstream.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, raw


def _normalised(upstream: aiohttp.ClientResponse, payload: object, request_id: str) -> web.Response:
    headers = rate_limit_headers(upstream.headers)
    headers[REQUEST_ID] = request_id
    return json_response(upstream_error_body(upstream.status, payload), upstream.status, headers)
