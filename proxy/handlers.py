"""The routes: passthrough when the client and upstream agree, translation when they differ."""

from __future__ import annotations

import aiohttp
import msgspec
from aiohttp import web

from diglot.proxy.chat_over_responses import chat_over_responses
from diglot.proxy.inbound import read_body
from diglot.proxy.limits import check_item_count, too_deep
from diglot.proxy.metrics import start_answer
from diglot.proxy.observability import CLIENT_GONE, RequestLog, get_logger
from diglot.proxy.responses_over_chat import responses_over_chat
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.upstream import REQUEST_ID, UpstreamRefused, read_all, relay_headers

log = get_logger()
_WHOLE_ANSWER_LIMIT = 1024 * 1024


class _Peek(msgspec.Struct):
    """What a passthrough log line reports and the limits count; the rest is skipped unparsed."""

    model: str | None = None
    stream: bool | None = None
    input: str | list[msgspec.Raw] | None = None
    messages: list[msgspec.Raw] | None = None


_peek = msgspec.json.Decoder(_Peek)


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses."""
    proxy, record = request.app[PROXY], request[RECORD]
    raw = await read_body(request, proxy.config.max_body_bytes)
    _log_body(proxy, record, raw)
    if proxy.config.upstream_api == "responses":
        return await _passthrough(request, proxy, record, "/responses", raw)
    return await responses_over_chat(request, proxy, record, raw)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    proxy, record = request.app[PROXY], request[RECORD]
    raw = await read_body(request, proxy.config.max_body_bytes)
    _log_body(proxy, record, raw)
    if proxy.config.upstream_api == "chat":
        return await _passthrough(request, proxy, record, "/chat/completions", raw)
    return await chat_over_responses(request, proxy, record, raw)


async def models(request: web.Request) -> web.StreamResponse:
    """GET /v1/models, always the upstream's list."""
    return await _passthrough(request, request.app[PROXY], request[RECORD], "/models", None)


def _check_items(peeked: _Peek, limit: int) -> None:
    if isinstance(peeked.input, list):
        check_item_count(len(peeked.input), limit, "input")
    if peeked.messages is not None:
        check_item_count(len(peeked.messages), limit, "messages")


def _log_body(proxy: Proxy, record: RequestLog, raw: bytes) -> None:
    if proxy.config.log_bodies:
        body = raw.decode("utf-8", "replace")
        log.info("request_body", request_id=record.request_id, body=body)


async def _passthrough(
    request: web.Request, proxy: Proxy, record: RequestLog, path: str, raw: bytes | None
) -> web.StreamResponse:
    """Relay the body up and the answer's bytes down as they arrive, untouched."""
    record.direction = "passthrough"
    content_type = None
    if raw is not None:
        content_type = request.headers.get("Content-Type", "application/json")
        try:
            peeked = _peek.decode(raw)
        except msgspec.DecodeError:
            pass
        except RecursionError:
            raise too_deep() from None
        else:
            record.model, record.stream = peeked.model, peeked.stream
            _check_items(peeked, proxy.config.max_input_items)
    headers = proxy.upstream.headers(request.headers, record.request_id, content_type)
    url = proxy.upstream.url(path, request.query_string)
    try:
        async with proxy.upstream.open(
            request.method, url, headers, raw, passthrough=True
        ) as upstream:
            response_headers = relay_headers(upstream.headers)
            response_headers[REQUEST_ID] = record.request_id
            if _sized_answer(upstream):
                body = await read_all(upstream)
                return web.Response(
                    body=body,
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=response_headers,
                )
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=response_headers
            )
            chunks = upstream.content.iter_any()
            try:
                await start_answer(request, response)
                while True:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        record.error = f"upstream broke mid-body: {exc!r}"
                        record.upstream_fault(
                            "timeout" if isinstance(exc, TimeoutError) else "broken_stream"
                        )
                        _abort(request)
                        return response
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                record.error = CLIENT_GONE
            return response
    except UpstreamRefused as refused:
        return refused.reply


def _sized_answer(upstream: aiohttp.ClientResponse) -> bool:
    """A small answer of known length goes out in one write, as a plain relay sends it."""
    length = upstream.content_length
    return (
        length is not None
        and length <= _WHOLE_ANSWER_LIMIT
        and "Content-Encoding" not in upstream.headers
        and not upstream.headers.get("Content-Type", "").startswith("text/event-stream")
    )


def _abort(request: web.Request) -> None:
    """Cut the client's connection so a half-relayed body is seen as broken, not complete."""
    transport = request.transport
    if transport is not None:
        transport.close()
