"""Responses clients served from a Chat Completions upstream: request, answer and stream."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any, NamedTuple, TypeGuard

import aiohttp
from aiohttp import web

from diglot.proxy.conversation import Turn, begin_turn, resolve_turn
from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import check_item_count
from diglot.proxy.metrics import start_answer
from diglot.proxy.observability import CLIENT_GONE, RequestLog, get_logger
from diglot.proxy.pump import Emit, TranslatingRelay, translated
from diglot.proxy.replies import json_response
from diglot.proxy.sse import encode_events
from diglot.proxy.state import Proxy
from diglot.proxy.store import Store
from diglot.proxy.store.connection import ConnectionStore
from diglot.proxy.upstream import (
    REQUEST_ID,
    Exchange,
    UpstreamRefused,
    not_the_api,
    rate_limit_headers,
    read_all,
    require_event_stream,
    upstream_failure,
    upstream_json,
)
from diglot.translators.context import ResponseContext
from diglot.translators.models import ResponsesRequest, decode_responses_request
from diglot.translators.requests import ChatCall, responses_request_to_chat
from diglot.translators.responses import chat_completion_to_response
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
log = get_logger()


class _Prepared(NamedTuple):
    """A turn decoded, its stored state read, translated: ready to go upstream."""

    parsed: ResponsesRequest
    turn: Turn
    call: ChatCall


async def _prepare(
    proxy: Proxy,
    record: RequestLog,
    headers: Mapping[str, str],
    raw: bytes,
    store: Store,
    kept_unstored: bool = False,
) -> _Prepared:
    record.direction = "responses->chat"
    parsed = decode_responses_request(raw, proxy.tool_shelf)
    record.model, record.stream = parsed.model, parsed.stream
    if not isinstance(parsed.input, str):
        check_item_count(len(parsed.input), proxy.config.max_input_items, "input")
    turn = begin_turn(store, proxy.sealer, headers, parsed, raw, kept_unstored)
    if turn.unresolved:
        await resolve_turn(turn, parsed, raw)
    call = responses_request_to_chat(
        parsed,
        proxy.options,
        now=int(time.time()),
        new_id=proxy.new_id,
        history=turn.history,
        sealing=proxy.sealer.sealing(turn.tenant),
    )
    if call.dropped:
        record.note_dropped(call.dropped)
    if proxy.config.log_bodies:
        log.info("upstream_request_body", request_id=record.request_id, body=call.body)
    return _Prepared(parsed, turn, call)


def _exchange(
    proxy: Proxy, record: RequestLog, headers: Mapping[str, str], call: ChatCall
) -> Exchange:
    upstream_headers = proxy.upstream.headers(headers, record.request_id, "application/json")
    url = proxy.upstream.url("/chat/completions")
    return proxy.upstream.open("POST", url, upstream_headers, dumps(call.body), passthrough=False)


async def responses_over_chat(
    request: web.Request, proxy: Proxy, record: RequestLog, raw: bytes
) -> web.StreamResponse:
    """POST /v1/responses answered by POSTing {upstream}/chat/completions."""
    parsed, turn, call = await _prepare(proxy, record, request.headers, raw, proxy.store)
    try:
        async with _exchange(proxy, record, request.headers, call) as upstream:
            if parsed.stream:
                require_event_stream(upstream)
                return await _stream(request, upstream, call.context, record, turn)
            response = _answer(await read_all(upstream), call.context, record, upstream.status)
            encoded = dumps(response)  # once, for the store and the client
            if turn.keeps and not await turn.keep(response, encoded):
                encoded = dumps(response)  # it now says it was not stored
            headers = rate_limit_headers(upstream.headers)
            headers[REQUEST_ID] = record.request_id
            return json_response(encoded, 200, headers)
    except UpstreamRefused as refused:
        return refused.reply


async def responses_turn(
    proxy: Proxy,
    record: RequestLog,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    store: ConnectionStore,
    generate: bool,
    emit: Emit,
) -> web.Response | None:
    """A WebSocket turn: the stream an HTTP client would get, its events handed to `emit`; the
    refusal an HTTP client would get instead, if the upstream refused."""
    _, turn, call = await _prepare(proxy, record, headers, raw, store, kept_unstored=True)
    if not generate:
        translator = ChatToResponsesStream(call.context)
        events = translator.complete_without_output()
        assert translator.response is not None
        await turn.keep(translator.response)
        await emit(events)
        return None
    try:
        async with _exchange(proxy, record, headers, call) as upstream:
            require_event_stream(upstream)
            record.first_byte = time.perf_counter()
            await _relay(upstream, call.context, record, turn, emit)
    except UpstreamRefused as refused:
        return refused.reply
    return None


def _answer(raw: bytes, ctx: ResponseContext, record: RequestLog, status: int) -> dict[str, Any]:
    """A whole chat.completion -> a whole response object."""
    completion = upstream_json(raw)
    if not _is_completion(completion):
        raise not_the_api("a chat completion", raw, status)
    try:
        response = chat_completion_to_response(completion, ctx)
    except Exception as exc:
        log.warning("bad_upstream_response", request_id=record.request_id, error=repr(exc))
        raise upstream_failure(
            502, "The upstream sent a chat completion diglot cannot read.", "bad_upstream_response"
        ) from None
    record.usage(response.get("usage"))
    return response


def _is_completion(payload: object) -> TypeGuard[dict[str, Any]]:
    """A chat.completion at least: its choices hold messages, unless it reports an error."""
    if not isinstance(payload, dict):
        return False
    if payload.get("error") is not None:
        return True
    choices = payload.get("choices")
    return isinstance(choices, list) and all(
        isinstance(choice, dict) and isinstance(choice.get("message"), dict) for choice in choices
    )


class _ChatStreamRelay(TranslatingRelay[ChatToResponsesStream]):
    """A chat upstream's chunks as Responses events, until the translator's terminal event."""

    __slots__ = ()
    what = "chunk"
    shape = "a chat completion chunk"

    def __init__(self, ctx: ResponseContext, record: RequestLog) -> None:
        super().__init__(record, ChatToResponsesStream(ctx))

    def start(self) -> list[dict[str, Any]]:
        return self.translator.start()

    def _shaped(self, payload: dict[str, Any]) -> bool:
        """Choices that are objects, or an error the upstream reports (checked on every chunk)."""
        choices = payload.get("choices")
        if type(choices) is list:
            return all(type(choice) is dict for choice in choices)
        return payload.get("error") is not None or payload.get("object") == "error"


async def _stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    ctx: ResponseContext,
    record: RequestLog,
    turn: Turn,
) -> web.StreamResponse:
    """Translate chunk by chunk as they arrive; always end with one terminal event."""
    headers = {
        **_SSE_HEADERS,
        **rate_limit_headers(upstream.headers),
        REQUEST_ID: record.request_id,
    }
    response = web.StreamResponse(status=200, headers=headers)

    async def write(events: list[dict[str, Any]]) -> None:
        await response.write(encode_events(events))

    try:
        await start_answer(request, response)
        await _relay(upstream, ctx, record, turn, write)
        await response.write_eof()
    except ConnectionResetError:
        record.error = CLIENT_GONE
    return response


async def _relay(
    upstream: aiohttp.ClientResponse,
    ctx: ResponseContext,
    record: RequestLog,
    turn: Turn,
    emit: Emit,
) -> None:
    """The translated events, each batch handed to `emit` as it is ready."""
    relay = _ChatStreamRelay(ctx, record)
    await emit(relay.start())
    async with aclosing(translated(upstream, relay)) as pieces:
        async for events in pieces:
            ended = relay.translator.response
            if ended is not None:  # the last events: stored before the client sees them end
                await turn.keep(ended)
            await emit(events)
