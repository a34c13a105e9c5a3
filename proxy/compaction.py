"""POST /v1/responses/compact: a conversation compacted into one sealed item.

In front of a chat upstream the backend writes the summary (see `translators.compaction` for what
the item stands for and how a later request expands it); in front of a Responses upstream the
request passes through untouched.
"""

from __future__ import annotations

from aiohttp import web

from diglot.proxy.handlers import log_body, passthrough
from diglot.proxy.inbound import read_body
from diglot.proxy.observability import RequestLog
from diglot.proxy.replies import json_response
from diglot.proxy.responses_over_chat import compaction_over_chat
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.upstream import REQUEST_ID, UpstreamRefused


async def compact(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses/compact."""
    proxy, record = request.app[PROXY], request[RECORD]
    raw = await read_body(request, proxy.config.max_body_bytes)
    log_body(proxy, record, raw)
    if proxy.config.upstream_api == "responses":
        return await passthrough(request, proxy, record, "/responses/compact", raw)
    return await compact_over_chat(request, proxy, record, raw)


async def compact_over_chat(
    request: web.Request, proxy: Proxy, record: RequestLog, raw: bytes
) -> web.StreamResponse:
    """The compacted window, made by the chat upstream; its refusal, if it refused."""
    try:
        compacted = await compaction_over_chat(proxy, record, request.headers, raw)
    except UpstreamRefused as refused:
        return refused.reply
    return json_response(compacted, 200, {REQUEST_ID: record.request_id})
