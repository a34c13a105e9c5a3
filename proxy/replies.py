"""JSON answers, and upstream errors re-shaped as OpenAI errors for the client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from diglot.proxy.jsonenc import dumps
from diglot.proxy.upstream import REQUEST_ID, rate_limit_headers
from diglot.translators.errors import upstream_error_body

_MAX_ERROR_BODY = 1024 * 1024


def json_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """orjson-encoded JSON; aiohttp's json_response would use the slower stdlib encoder."""
    return web.Response(
        body=dumps(body), status=status, content_type="application/json", headers=headers
    )


async def upstream_error_response(
    upstream: aiohttp.ClientResponse, request_id: str
) -> web.Response:
    """Same status, an OpenAI error body, Retry-After and x-ratelimit-* kept."""
    try:
        raw = await upstream.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    try:
        payload: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = raw
    headers = rate_limit_headers(upstream.headers)
    headers[REQUEST_ID] = request_id
    return json_response(upstream_error_body(upstream.status, payload), upstream.status, headers)
