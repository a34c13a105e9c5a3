"""The routes: passthrough when the client and upstream agree, translation when they differ."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import msgspec
from aiohttp import web

from diglot.proxy.chat_over_responses import chat_over_responses
from diglot.proxy.inbound import read_body
from diglot.proxy.limits import check_item_count, too_deep
from diglot.proxy.metrics import start_answer
from diglot.proxy.observability import CLIENT_GONE, RequestLog, get_logger
from diglot.proxy.pump import Emit, Pieces
from diglot.proxy.replies import json_response
from diglot.proxy.responses_over_chat import responses_over_chat, responses_turn
from diglot.proxy.routing import ModelRenamer, Pool, Route, name_for_client, renamed_body
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.store.connection import ConnectionStore
from diglot.proxy.upstream import (
    REQUEST_ID,
    UpstreamRefused,
    read_all,
    relay_headers,
    upstream_failure,
)
from diglot.translators.chat_models import decode_chat_request
from diglot.translators.errors import missing_parameter
from diglot.translators.responses_models import decode_responses_request

if TYPE_CHECKING:  # websocket imports this module for socket_turns
    from diglot.proxy.websocket import TurnRunner

log = get_logger()
_WHOLE_ANSWER_LIMIT = 1024 * 1024
Handler = Callable[[web.Request, Proxy, RequestLog, bytes], Awaitable[web.StreamResponse]]


class _Peek(msgspec.Struct):
    """What a passthrough log line reports and the limits count; the rest is skipped unparsed."""

    model: str | None = None
    stream: bool | None = None
    input: str | list[msgspec.Raw] | None = None
    messages: list[msgspec.Raw] | None = None


_peek = msgspec.json.Decoder(_Peek)


class _Wanted(msgspec.Struct):
    """What routing reads of a Responses body; the rest is skipped unparsed."""

    model: str
    prompt_cache_key: str | None = None
    conversation: str | dict[str, Any] | None = None
    previous_response_id: str | None = None


class _ChatWanted(msgspec.Struct):
    """What routing reads of a Chat body."""

    model: str
    prompt_cache_key: str | None = None


class _Shape(NamedTuple):
    """A client API as routing sees it: its path, what it reads, and how it is translated."""

    path: str
    read: Callable[[bytes], _Wanted | _ChatWanted]
    native: Callable[[Pool], bool]  # the upstream speaks it: passed through
    translate: Handler


def _reader(
    wanted: type[_Wanted] | type[_ChatWanted], decode: Callable[[bytes], object]
) -> Callable[[bytes], _Wanted | _ChatWanted]:
    """A body's routing fields; a body they cannot be read from gets the full decoder's 400."""
    decoder = msgspec.json.Decoder(wanted)

    def read(raw: bytes) -> _Wanted | _ChatWanted:
        try:
            return decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            decode(raw)  # raises the 400 that names the problem
        raise missing_parameter("model")

    return read


def _speaks_responses(pool: Pool) -> bool:
    return pool.responses


def _speaks_chat(pool: Pool) -> bool:
    return pool.chat


_RESPONSES = _Shape(
    "/responses",
    _reader(_Wanted, decode_responses_request),
    _speaks_responses,
    responses_over_chat,
)
_CHAT = _Shape(
    "/chat/completions",
    _reader(_ChatWanted, decode_chat_request),
    _speaks_chat,
    chat_over_responses,
)


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses."""
    proxy, record = request.app[PROXY], request[RECORD]
    raw = await read_body(request, proxy.config.max_body_bytes)
    log_body(proxy, record, raw)
    only = proxy.router.only
    if only is None:
        return await _routed(request, proxy, record, raw, _RESPONSES)
    if only.responses:
        return await passthrough(request, proxy, record, "/responses", raw)
    return await responses_over_chat(request, proxy, record, raw)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    proxy, record = request.app[PROXY], request[RECORD]
    raw = await read_body(request, proxy.config.max_body_bytes)
    log_body(proxy, record, raw)
    only = proxy.router.only
    if only is None:
        return await _routed(request, proxy, record, raw, _CHAT)
    if only.chat:
        return await passthrough(request, proxy, record, "/chat/completions", raw)
    return await chat_over_responses(request, proxy, record, raw)


async def _routed(
    request: web.Request, proxy: Proxy, record: RequestLog, raw: bytes, shape: _Shape
) -> web.StreamResponse:
    """To the upstream the model routes to: passed through when it speaks the client's API."""
    wanted = shape.read(raw)
    record.model = wanted.model
    route = proxy.router.route(wanted.model)
    pool = route.pool
    if not pool.known:
        await pool.learn()
    if shape.native(pool):
        routed, raw, renamer = _onto(proxy, route, request.headers, wanted, raw)
        response = await passthrough(request, routed, record, shape.path, raw, renamer)
    else:
        response = await shape.translate(request, proxy, record, raw)
    pool.refused_with(response.status)
    return response


def _onto(
    proxy: Proxy,
    route: Route,
    headers: Mapping[str, str],
    wanted: _Wanted | _ChatWanted,
    raw: bytes,
) -> tuple[Proxy, bytes, ModelRenamer | None]:
    """A passed-through request bound to its replica, with the backend's name for its model,
    and what puts the client's name back in the answer."""
    routed = proxy.router.on(proxy, proxy.router.pick(route, headers, wanted, None))
    if route.model is None:
        return routed, raw, None
    return routed, renamed_body(raw, route.model), ModelRenamer(route.model, wanted.model)


def socket_turns(passthrough: TurnRunner) -> TurnRunner:
    """WebSocket turns in front of several upstreams: each goes where its model routes,
    translated for a chat upstream, else run by `passthrough` on the replica picked for it."""

    async def turn(
        proxy: Proxy,
        record: RequestLog,
        headers: Mapping[str, str],
        raw: bytes,
        *,
        store: ConnectionStore,
        generate: bool,
        emit: Emit,
    ) -> web.Response | None:
        wanted = _RESPONSES.read(raw)
        route = proxy.router.route(wanted.model)
        if not route.pool.known:
            await route.pool.learn()
        if not route.pool.responses:
            return await responses_turn(
                proxy, record, headers, raw, store=store, generate=generate, emit=emit
            )
        routed, raw, renamer = _onto(proxy, route, headers, wanted, raw)
        if renamer is not None:
            emit = _named(emit, wanted.model)
        return await passthrough(
            routed, record, headers, raw, store=store, generate=generate, emit=emit
        )

    return turn


def _named(emit: Emit, model: str) -> Emit:
    """`emit`, its events renamed to the model the client asked for."""

    async def renamed(events: Pieces) -> None:
        name_for_client(events, model)
        await emit(events)

    return renamed


async def models(request: web.Request) -> web.StreamResponse:
    """GET /v1/models: the upstream's list, or every upstream's merged."""
    proxy, record = request.app[PROXY], request[RECORD]
    if proxy.router.only is not None:
        return await passthrough(request, proxy, record, "/models", None)
    record.direction = "passthrough"
    listed = await proxy.router.model_list(request.headers, record.request_id)
    if listed is None:
        raise upstream_failure(
            502, "No upstream answered with its list of models.", "upstream_unreachable", "refused"
        )
    body = {"object": "list", "data": listed}
    return json_response(body, 200, {REQUEST_ID: record.request_id})


def _check_items(peeked: _Peek, limit: int) -> None:
    if isinstance(peeked.input, list):
        check_item_count(len(peeked.input), limit, "input")
    if peeked.messages is not None:
        check_item_count(len(peeked.messages), limit, "messages")


def log_body(proxy: Proxy, record: RequestLog, raw: bytes) -> None:
    if proxy.config.log_bodies:
        body = raw.decode("utf-8", "replace")
        log.info("request_body", request_id=record.request_id, body=body)


async def passthrough(
    request: web.Request,
    proxy: Proxy,
    record: RequestLog,
    path: str,
    raw: bytes | None,
    renamer: ModelRenamer | None = None,
) -> web.StreamResponse:
    """Relay the body up and the answer's bytes down as they arrive, untouched (but for the
    model's name, when an alias gave the backend another)."""
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
            if renamer is not None:
                response_headers.popall("Content-Length", None)  # the body's length changes
            if _sized_answer(upstream):
                body = await read_all(upstream)
                if renamer is not None:
                    body = renamer.whole(body)
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
                    await response.write(chunk if renamer is None else renamer.feed(chunk))
                if renamer is not None:
                    await response.write(renamer.end())
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
