"""Responses clients served from a Chat Completions upstream: request, answer and stream."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any, NamedTuple, TypeGuard

import aiohttp
from aiohttp import web

from diglot.proxy.background import Run, start_background, take_background
from diglot.proxy.conversation import Turn, begin_turn, resolve_turn
from diglot.proxy.conversations import Joined, join_conversation
from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import check_item_count
from diglot.proxy.metrics import start_answer
from diglot.proxy.observability import CLIENT_GONE, RequestLog, get_logger
from diglot.proxy.pump import Emit, TranslatingRelay, count_usage, translated
from diglot.proxy.replies import json_response
from diglot.proxy.routing import name_for_client
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
from diglot.translators.compaction import (
    compacted_response,
    compaction_item,
    completion_summary,
    ends_in_trigger,
    past_threshold,
    summary_request,
    user_messages,
    with_compaction,
)
from diglot.translators.context import ResponseContext
from diglot.translators.ids import ITEM_PREFIXES
from diglot.translators.requests import ChatCall, request_to_chat
from diglot.translators.responses import completion_to_responses
from diglot.translators.responses_models import ResponsesRequest, decode_responses_request
from diglot.translators.responses_shapes import (
    Response,
    ResponseCompaction,
    ResponseCompactionItem,
    ResponseStreamEvent,
)
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream
from diglot.translators.usage import usage_to_responses

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
log = get_logger()


class _Prepared(NamedTuple):
    """A turn decoded, its stored state read, translated: ready to go upstream, or `settled`
    (answered without generating) by the compaction it asked for."""

    parsed: ResponsesRequest
    turn: Turn
    call: ChatCall
    leading: tuple[ResponseCompactionItem, ...] = ()  # items its response starts with
    settled: bool = False
    usage: Mapping[str, Any] | None = None  # the Chat usage of a settled turn's compaction
    joined: Joined | None = None  # the conversation it takes its turn in
    background: bool = False  # it runs detached from the client


async def _prepare(
    proxy: Proxy,
    record: RequestLog,
    headers: Mapping[str, str],
    raw: bytes,
    store: Store,
    kept_unstored: bool = False,
    answered: bool = True,
    background: bool = False,
) -> _Prepared:
    """With `background`, the route runs a request that asks for it in the background."""
    record.direction = "responses->chat"
    parsed = decode_responses_request(raw, proxy.tool_shelf)
    record.model, record.stream = parsed.model, parsed.stream
    background = background and take_background(parsed.params)
    if not isinstance(parsed.input, str):
        check_item_count(len(parsed.input), proxy.config.max_input_items, "input")
    turn = begin_turn(
        store, proxy.sealer, headers, parsed, raw, kept_unstored, answered, new_id=proxy.new_id
    )
    joined = await join_conversation(store, turn.tenant, parsed, proxy.new_id)
    if turn.unresolved:
        await resolve_turn(turn, parsed, raw, new_id=proxy.new_id)
    call = _translate(proxy, parsed, turn, joined, background)
    if joined is not None:
        joined.take_input(raw, turn.references)
    if call.dropped:
        record.note_dropped(call.dropped)
    return _Prepared(parsed, turn, call, joined=joined, background=background)


def _translate(
    proxy: Proxy, parsed: ResponsesRequest, turn: Turn, joined: Joined | None, background: bool
) -> ChatCall:
    """The turn as a chat request, after the conversation it joined if any; its response says
    which conversation, and whether it runs in the background."""
    call = request_to_chat(
        parsed,
        proxy.options,
        now=int(time.time()),
        new_id=proxy.new_id,
        history=turn.history if joined is None else joined.history,
        sealing=proxy.sealer.sealing(turn.tenant),
    )
    if joined is not None:
        call.context.echo["conversation"] = {"id": joined.id}
    if background:
        call.context.echo["background"] = True
    return call


async def _compacting(
    proxy: Proxy, record: RequestLog, headers: Mapping[str, str], prepared: _Prepared
) -> _Prepared:
    """A turn asking for compaction gets it first: one whose input ends in a
    `compaction_trigger` is settled by it; one past its `context_management` threshold is
    answered from the compacted conversation, the compaction item first in its output."""
    parsed, turn, call = prepared.parsed, prepared.turn, prepared.call
    if ends_in_trigger(parsed.input):
        item, usage = await _compaction(proxy, record, headers, call, turn.tenant)
        return prepared._replace(leading=(item,), settled=True, usage=usage)
    if not past_threshold(parsed.params, call.body, parsed.input, turn.previous_usage):
        return prepared
    item, _ = await _compaction(proxy, record, headers, call, turn.tenant)
    parsed.input = with_compaction(parsed.input, item)
    call = _translate(proxy, parsed, turn, prepared.joined, prepared.background)
    return prepared._replace(call=call, leading=(item,))


async def _compaction(
    proxy: Proxy, record: RequestLog, headers: Mapping[str, str], call: ChatCall, tenant: str
) -> tuple[ResponseCompactionItem, Mapping[str, Any] | None]:
    """The conversation `call` holds, summarised by the backend and sealed for `tenant`: a
    compaction item, and the Chat usage the summary cost."""
    body = summary_request(call.body, proxy.config.compaction_prompt)
    async with _post(proxy, record, headers, body) as upstream:
        raw, status = await read_all(upstream), upstream.status
    completion = upstream_json(raw)
    if not _is_completion(completion):
        raise not_the_api("a chat completion", raw, status)
    summary = completion_summary(completion, proxy.options.think_tags)
    if summary.usage is not None:
        count_usage(record, usage_to_responses(summary.usage))
    if not summary.text:
        raise upstream_failure(
            502,
            "The upstream gave no summary to compact the conversation with: "
            f"{summary.error or 'its answer holds no text'}",
            "bad_upstream_response",
        )
    sealed = proxy.sealer.sealing(tenant).seal(summary.text)
    return compaction_item(proxy.new_id(ITEM_PREFIXES["compaction"]), sealed), summary.usage


def _post(
    proxy: Proxy, record: RequestLog, headers: Mapping[str, str], body: dict[str, Any]
) -> Exchange:
    """A Chat Completions request upstream (the model by its backend's name)."""
    body = proxy.router.for_backend(body)
    if proxy.config.log_bodies:
        log.info("upstream_request_body", request_id=record.request_id, body=body)
    upstream_headers = proxy.upstream.headers(headers, record.request_id, "application/json")
    url = proxy.upstream.url("/chat/completions")
    return proxy.upstream.open("POST", url, upstream_headers, dumps(body), passthrough=False)


def _bound(proxy: Proxy, headers: Mapping[str, str], prepared: _Prepared) -> Proxy:
    """The turn's proxy, on the replica its model and session route it to."""
    response_id = prepared.call.context.response_id
    return proxy.router.bound(proxy, prepared.parsed.params, headers, response_id)


def _named(proxy: Proxy, parsed: ResponsesRequest) -> str | None:
    """The model's name as the client gave it, when its backend knows it by another."""
    return parsed.model if proxy.router.aliased(parsed.model) else None


async def _settled(prepared: _Prepared) -> tuple[list[ResponseStreamEvent], Response]:
    """The whole stream and response of a turn answered without generating, kept before the
    client sees it end."""
    translator = _translator(prepared)
    events = translator.complete_without_output(prepared.usage)
    response = translator.response
    assert response is not None
    await _kept(prepared, response)
    return events, response


def _translator(prepared: _Prepared) -> ChatToResponsesStream:
    """The stream translator of a prepared turn's response."""
    return ChatToResponsesStream(prepared.call.context, leading=prepared.leading)


async def _kept(prepared: _Prepared, response: Response, encoded: bytes | None = None) -> bool:
    """The finished response stored, and added to the conversation it joined, before the client
    sees it end; False when the store failed (the response then says it was not stored)."""
    kept = await prepared.turn.keep(response, encoded)
    if prepared.joined is not None:
        await prepared.joined.append(response)
    return kept


async def compaction_over_chat(
    proxy: Proxy, record: RequestLog, headers: Mapping[str, str], raw: bytes
) -> ResponseCompaction:
    """POST /v1/responses/compact: the conversation summarised by the backend, as the window
    the client keeps (its user messages, then the compaction item); nothing is stored."""
    parsed, turn, call, *_ = await _prepare(
        proxy, record, headers, raw, proxy.store, answered=False
    )
    proxy = proxy.router.bound(proxy, parsed.params, headers, None)
    item, usage = await _compaction(proxy, record, headers, call, turn.tenant)
    kept = user_messages(turn.history or (), parsed.input, proxy.new_id)
    ctx = call.context
    return compacted_response(ctx.response_id, ctx.created_at, kept, item, usage)


async def responses_over_chat(
    request: web.Request, proxy: Proxy, record: RequestLog, raw: bytes
) -> web.StreamResponse:
    """POST /v1/responses answered by POSTing {upstream}/chat/completions."""
    given = request.headers
    try:
        prepared = await _prepare(proxy, record, given, raw, proxy.store, background=True)
        proxy = _bound(proxy, given, prepared)
        prepared = await _compacting(proxy, record, given, prepared)
        if prepared.settled:
            return await _settled_reply(request, record, prepared)
        if prepared.background:
            return await _detached(request, proxy, record, prepared)
        parsed, call = prepared.parsed, prepared.call
        async with _post(proxy, record, given, call.body) as upstream:
            if parsed.stream:
                require_event_stream(upstream)
                return await _stream(request, upstream, prepared, record, _named(proxy, parsed))
            raw_answer, status = await read_all(upstream), upstream.status
            response = _answer(raw_answer, call.context, record, status, prepared.leading)
            if (named := _named(proxy, parsed)) is not None:
                name_for_client([response], named)
            encoded = dumps(response)  # once, for the store and the client
            if not await _kept(prepared, response, encoded):
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
    try:
        prepared = await _prepare(proxy, record, headers, raw, store, kept_unstored=True)
        proxy = _bound(proxy, headers, prepared)
        if generate:
            prepared = await _compacting(proxy, record, headers, prepared)
        if not generate or prepared.settled:
            events, _ = await _settled(prepared)
            await emit(events)
            return None
        call = prepared.call
        async with _post(proxy, record, headers, call.body) as upstream:
            require_event_stream(upstream)
            record.first_byte = time.perf_counter()
            await _relay(upstream, record, prepared, emit, _named(proxy, prepared.parsed))
    except UpstreamRefused as refused:
        return refused.reply
    return None


async def _detached(
    request: web.Request, proxy: Proxy, record: RequestLog, prepared: _Prepared
) -> web.StreamResponse:
    """A background turn: answered at once, generated by a run the app owns."""
    parsed, call = prepared.parsed, prepared.call
    return await start_background(
        request,
        record,
        parsed.params,
        prepared.turn,
        call.context,
        call.body,
        lambda run: _generate(proxy, run, prepared),
    )


async def _generate(proxy: Proxy, run: Run, prepared: _Prepared) -> None:
    """A background run: the upstream's stream, through the translator the run polls and
    cancels."""
    translator = run.translator = _translator(prepared)
    async with _post(proxy, run.record, run.headers, prepared.call.body) as upstream:
        require_event_stream(upstream)
        named = _named(proxy, prepared.parsed)
        await _relay(upstream, run.record, prepared, run.emit, named, translator)


async def _settled_reply(
    request: web.Request, record: RequestLog, prepared: _Prepared
) -> web.StreamResponse:
    """A settled turn, streamed or whole as the client asked."""
    events, response = await _settled(prepared)
    if prepared.parsed.stream:
        return await _sse(request, record, {}, lambda emit: emit(events))
    return json_response(dumps(response), 200, {REQUEST_ID: record.request_id})


def _answer(
    raw: bytes,
    ctx: ResponseContext,
    record: RequestLog,
    status: int,
    leading: tuple[ResponseCompactionItem, ...] = (),
) -> Response:
    """A whole chat.completion -> a whole response object, `leading` items first."""
    completion = upstream_json(raw)
    if not _is_completion(completion):
        raise not_the_api("a chat completion", raw, status)
    try:
        response = completion_to_responses(completion, ctx, leading=leading)
    except Exception as exc:
        log.warning("bad_upstream_response", request_id=record.request_id, error=repr(exc))
        raise upstream_failure(
            502, "The upstream sent a chat completion diglot cannot read.", "bad_upstream_response"
        ) from None
    count_usage(record, response.get("usage"))
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

    def __init__(self, record: RequestLog, translator: ChatToResponsesStream) -> None:
        super().__init__(record, translator)

    def start(self) -> list[ResponseStreamEvent]:
        return self.translator.start()

    def _shaped(self, payload: dict[str, Any]) -> bool:
        """Choices that are objects, or an error the upstream reports (checked on every chunk)."""
        choices = payload.get("choices")
        if type(choices) is list:
            for choice in choices:  # noqa: SIM110 (all() would make a generator every chunk)
                if type(choice) is not dict:
                    return False
            return True
        return payload.get("error") is not None or payload.get("object") == "error"


async def _stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    prepared: _Prepared,
    record: RequestLog,
    named: str | None,
) -> web.StreamResponse:
    """Translate chunk by chunk as they arrive; always end with one terminal event."""
    return await _sse(
        request,
        record,
        rate_limit_headers(upstream.headers),
        lambda emit: _relay(upstream, record, prepared, emit, named),
    )


async def _sse(
    request: web.Request,
    record: RequestLog,
    headers: Mapping[str, str],
    produce: Callable[[Emit], Awaitable[None]],
) -> web.StreamResponse:
    """An event stream of what `produce` hands its `emit`, to a client that may go away."""
    response = web.StreamResponse(
        status=200, headers={**_SSE_HEADERS, **headers, REQUEST_ID: record.request_id}
    )

    async def write(events: list[dict[str, Any]]) -> None:
        await response.write(encode_events(events))

    try:
        await start_answer(request, response)
        await produce(write)
        await response.write_eof()
    except ConnectionResetError:
        record.error = CLIENT_GONE
    return response


async def _relay(
    upstream: aiohttp.ClientResponse,
    record: RequestLog,
    prepared: _Prepared,
    emit: Emit,
    named: str | None = None,
    translator: ChatToResponsesStream | None = None,
) -> None:
    """The translated events, each batch handed to `emit` as it is ready (with the model the
    client `named`, when its backend knows it by another name), through `translator` when the
    caller holds it."""
    relay = _ChatStreamRelay(record, translator or _translator(prepared))
    await emit(relay.start())
    async with aclosing(translated(upstream, relay)) as pieces:
        async for events in pieces:
            if named is not None:
                name_for_client(events, named)
            ended = relay.translator.response
            if ended is not None:  # the last events: stored before the client sees them end
                await _kept(prepared, ended)
            await emit(events)
