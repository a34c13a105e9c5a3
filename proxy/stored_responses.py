"""GET and DELETE /v1/responses/{id} and its input items: from diglot's store, or relayed to a
Responses upstream, which owns its own state (with several upstreams: the store first, then
each Responses upstream in turn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web
from yarl import URL

from diglot.proxy.background import RUNS, stream_response
from diglot.proxy.conversation import chain_items, not_found, store_unavailable, tenant_of
from diglot.proxy.conversations import page_query
from diglot.proxy.handlers import passthrough
from diglot.proxy.replies import json_response
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.store import Record, StoreUnavailable, page_items
from diglot.proxy.upstream import REQUEST_ID, Upstream, relay_whole
from diglot.translators.errors import RequestError


async def get_response(request: web.Request) -> web.StreamResponse:
    """GET /v1/responses/{response_id}: the stored response object (a background one as it
    stands), or with `stream=true` its events (see proxy.background)."""
    proxy = request.app[PROXY]
    streamed = request.query.get("stream") == "true"
    if not proxy.router.keeps_state:
        if streamed:  # relayed as the events arrive
            path = "/responses/" + quote(request.match_info["response_id"], safe="")
            return await passthrough(request, proxy, request[RECORD], path, None)
        return await _relay(request, proxy)
    if streamed:
        return await stream_response(request)
    record = await _stored(request, proxy)
    if record is None:
        return await _relay_unknown(request, proxy)
    stored = msgspec.json.decode(record.body)["response"]
    shown = await request.app[RUNS].shown(record.tenant, record.id, stored)
    return _json(request, shown)


async def delete_response(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/responses/{response_id}."""
    proxy = request.app[PROXY]
    if not proxy.router.keeps_state:
        return await _relay(request, proxy)
    response_id = request.match_info["response_id"]
    try:
        deleted = await proxy.store.delete(tenant_of(request.headers), response_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the response cannot be deleted") from None
    if not deleted:
        return await _relay_unknown(request, proxy)
    return _json(request, {"id": response_id, "object": "response.deleted", "deleted": True})


async def list_input_items(request: web.Request) -> web.StreamResponse:
    """GET /v1/responses/{response_id}/input_items: a page of the items the response was made
    from, those of the responses it continues included."""
    proxy = request.app[PROXY]
    if not proxy.router.keeps_state:
        return await _relay(request, proxy)
    limit, after, order = page_query(request)
    response_id = request.match_info["response_id"]
    try:
        chain = await proxy.store.chain(tenant_of(request.headers), response_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "stored responses cannot be read") from None
    if not chain:
        return await _relay_unknown(request, proxy)
    bodies = [msgspec.json.decode(record.body) for record in chain]
    items = chain_items(bodies[:-1]) + bodies[-1]["input"]
    page = page_items(items, limit, after, order)
    if page is None:
        raise RequestError(
            f"Invalid value for 'after': the response has no input item with id '{after}'.",
            "after",
        )
    data = page.data
    return _json(
        request,
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        },
    )


async def _stored(request: web.Request, proxy: Proxy) -> Record | None:
    response_id = request.match_info["response_id"]
    try:
        return await proxy.store.get(tenant_of(request.headers), response_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "stored responses cannot be read") from None


def _json(request: web.Request, body: Mapping[str, Any]) -> web.Response:
    return json_response(body, 200, {REQUEST_ID: request[RECORD].request_id})


async def _relay_unknown(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """A response diglot does not keep: a Responses upstream's, if one has it, else 404."""
    if not any(pool.responses for pool in proxy.router.pools):
        raise not_found(request.match_info["response_id"])
    return await _relay(request, proxy)


async def _relay(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """The same request to each Responses upstream in turn, until one has the response; its
    answer (small JSON) relayed as is."""
    keepers = [pool.pick(None) for pool in proxy.router.pools if pool.responses]
    for upstream in keepers[:-1]:
        answer = await _relayed(request, upstream)
        if answer.status != 404:
            return answer
    return await _relayed(request, keepers[-1])


async def _relayed(request: web.Request, upstream: Upstream) -> web.Response:
    record = request[RECORD]
    record.direction = "passthrough"
    path = "/responses/" + quote(request.match_info["response_id"], safe="")
    if request.path.endswith("/input_items"):
        path += "/input_items"
    query = request.rel_url.raw_query_string
    url = URL(upstream.base + path + (f"?{query}" if query else ""), encoded=True)
    headers = upstream.headers(request.headers, record.request_id, None)
    return await relay_whole(upstream, request.method, url, headers, None, record.request_id)
