"""Chat Completions clients served from a Responses upstream: request, answer and stream.

`n > 1` is served by n concurrent upstream requests whose answers become choices 0..n-1; one
that fails hard cancels the others, and so does a client that goes away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing
from typing import Any, TypeGuard, TypeVar

import aiohttp
from aiohttp import web

from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import check_item_count
from diglot.proxy.metrics import start_answer
from diglot.proxy.observability import CLIENT_GONE, RequestLog, get_logger
from diglot.proxy.pump import TranslatingRelay, count_usage, translated
from diglot.proxy.replies import json_response
from diglot.proxy.routing import name_for_client
from diglot.proxy.state import Proxy
from diglot.proxy.upstream import (
    REQUEST_ID,
    UpstreamRefused,
    not_the_api,
    rate_limit_headers,
    read_all,
    require_event_stream,
    upstream_failure,
    upstream_json,
)
from diglot.translators.chat_models import decode_chat_request
from diglot.translators.chat_shapes import ChatCompletion
from diglot.translators.context import ChatContext
from diglot.translators.errors import UpstreamFailed
from diglot.translators.requests import ResponsesCall, request_to_responses
from diglot.translators.responses import merge_chat_choices, response_to_chat
from diglot.translators.stream.choices_fan_in import ChoicesFanIn
from diglot.translators.stream.lifecycle import StreamPhase
from diglot.translators.stream.responses_to_chat import ResponsesToChatStream

DROPPED_HEADER = "x-diglot-dropped-params"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_DONE_EVENT = b"data: [DONE]\n\n"
_ENDED = frozenset({"completed", "incomplete", "failed"})  # what a whole answer's status can be
_T = TypeVar("_T")
Chunks = list[dict[str, Any]]
log = get_logger()


async def chat_over_responses(
    request: web.Request, proxy: Proxy, record: RequestLog, raw: bytes
) -> web.StreamResponse:
    """POST /v1/chat/completions answered by POSTing {upstream}/responses (n times for n > 1)."""
    record.direction = "chat->responses"
    parsed = decode_chat_request(raw)
    record.model, record.stream = parsed.model, parsed.stream
    check_item_count(len(parsed.params.messages), proxy.config.max_input_items, "messages")
    proxy = proxy.router.bound(proxy, parsed.params, request.headers, None)
    call = request_to_responses(parsed, proxy.options, now=int(time.time()), new_id=proxy.new_id)
    headers = {REQUEST_ID: record.request_id}
    if call.dropped:
        record.note_dropped(call.dropped)
        headers[DROPPED_HEADER] = ", ".join(record.dropped)
    if proxy.config.log_bodies:
        log.info("upstream_request_body", request_id=record.request_id, body=call.body)
    upstream = _Calls(request, proxy, record, call)
    try:
        if parsed.stream:
            return await _stream(request, upstream, headers)
        return await _answer(upstream, headers)
    except UpstreamRefused as refused:
        return refused.reply
    except UpstreamFailed as failure:
        record.error = failure.body["error"]["message"]
        record.upstream_fault("error_event")
        return json_response(failure.body, failure.status, {REQUEST_ID: record.request_id})


class _Calls:
    """The one request body sent to the upstream for each choice, and how its answer is read."""

    __slots__ = ("body", "context", "headers", "n", "named", "proxy", "record", "url")

    def __init__(
        self, request: web.Request, proxy: Proxy, record: RequestLog, call: ResponsesCall
    ) -> None:
        self.proxy = proxy
        self.record = record
        self.context = call.context
        self.n = call.n
        self.body = dumps(proxy.router.for_backend(call.body))
        # The client's name for the model, when its backend knows it by another.
        self.named = call.context.model if proxy.router.aliased(call.context.model) else None
        self.headers = proxy.upstream.headers(
            request.headers, record.request_id, "application/json"
        )
        self.url = proxy.upstream.url("/responses")

    def open(self) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """One upstream exchange; an error status raises the client's reply (UpstreamRefused)."""
        return self.proxy.upstream.open(
            "POST", self.url, self.headers, self.body, passthrough=False
        )

    async def opened(self, stack: AsyncExitStack) -> aiohttp.ClientResponse:
        """One upstream stream, open and an event stream, released when `stack` closes."""
        answer: aiohttp.ClientResponse = await stack.enter_async_context(self.open())
        require_event_stream(answer)
        return answer

    async def completion(self, index: int) -> tuple[ChatCompletion, dict[str, str]]:
        """One choice, non-streamed: the chat.completion and the upstream's rate-limit headers."""
        async with self.open() as upstream:
            raw = await read_all(upstream)
            return self.translate(raw, index, upstream.status), rate_limit_headers(upstream.headers)

    def translate(self, raw: bytes, index: int, status: int) -> ChatCompletion:
        """A whole response object -> a chat.completion (UpstreamFailed if it failed)."""
        response = upstream_json(raw)
        if not _is_response(response):
            raise not_the_api("a response object", raw, status)
        if response["status"] not in _ENDED:
            raise upstream_failure(
                502,
                f"The upstream answered with a response that has not ended: status "
                f"{response['status']!r}.",
                "bad_upstream_response",
            )
        try:
            completion = response_to_chat(response, self.context, index)
        except UpstreamFailed:
            raise
        except Exception as exc:
            log.warning("bad_upstream_response", request_id=self.record.request_id, error=repr(exc))
            raise upstream_failure(
                502, "The upstream sent a response diglot cannot read.", "bad_upstream_response"
            ) from None
        count_usage(self.record, response.get("usage"))
        if self.named is not None:
            name_for_client([completion], self.named)
        return completion

    def encode(self, chunks: Chunks) -> bytes:
        """Chunks in Chat framing, with the client's name for the model."""
        if self.named is not None:
            name_for_client(chunks, self.named)
        return _encode(chunks)


def _is_response(payload: object) -> TypeGuard[dict[str, Any]]:
    """A Responses object at least: a status and a list of output items."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("status"), str)
        and isinstance(payload.get("output"), list)
    )


async def _answer(upstream: _Calls, headers: dict[str, str]) -> web.Response:
    """Non-streamed: one completion, or n merged into one with their choices and usage."""
    if upstream.n == 1:
        completion, limits = await upstream.completion(0)
    else:
        answers = await _all(upstream.completion(index) for index in range(upstream.n))
        completion = merge_chat_choices([answer for answer, _ in answers])
        limits = answers[0][1]
    return json_response(completion, 200, {**limits, **headers})


async def _all(calls: Iterable[Awaitable[_T]]) -> list[_T]:
    """Results in order; the first failure cancels the rest and is raised (so is cancellation)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failures = [task.exception() for task in done]  # retrieves every one, raises the first
        for failure in failures:
            if failure is not None:
                raise failure
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()


class _StreamRelay(TranslatingRelay[ResponsesToChatStream]):
    """One upstream Responses stream as one choice's chat chunks, until it ends."""

    __slots__ = ()
    what = "event"
    shape = "a Responses event"

    def __init__(self, ctx: ChatContext, index: int, record: RequestLog) -> None:
        super().__init__(record, ResponsesToChatStream(ctx, index))

    def _shaped(self, payload: dict[str, Any]) -> bool:
        """Typed, as every event is (unknown types are skipped, as new ones may come)."""
        return isinstance(payload.get("type"), str)


def _encode(chunks: Chunks) -> bytes:
    """Chat framing: `data: <json>` and a blank line per chunk, no event names."""
    return b"".join([b"data: " + dumps(chunk) + b"\n\n" for chunk in chunks])


async def _stream(
    request: web.Request, upstream: _Calls, headers: dict[str, str]
) -> web.StreamResponse:
    """Opens the n upstream streams (an error status answers instead), then relays them."""
    async with AsyncExitStack() as stack:
        if upstream.n == 1:
            answers = [await upstream.opened(stack)]
        else:
            answers = await _all(upstream.opened(stack) for _ in range(upstream.n))
        response = web.StreamResponse(
            status=200,
            headers={**_SSE_HEADERS, **rate_limit_headers(answers[0].headers), **headers},
        )
        try:
            await start_answer(request, response)
            if upstream.n == 1:
                await _relay_one(response, answers[0], upstream)
            else:
                await _relay_many(response, answers, upstream)
            await response.write(_DONE_EVENT)
            await response.write_eof()
        except ConnectionResetError:
            upstream.record.error = CLIENT_GONE
        return response


async def _relay_one(
    response: web.StreamResponse, answer: aiohttp.ClientResponse, upstream: _Calls
) -> None:
    relay = _StreamRelay(upstream.context, 0, upstream.record)
    async with aclosing(translated(answer, relay)) as chunks:
        async for piece in chunks:
            await response.write(upstream.encode(piece))


async def _relay_many(
    response: web.StreamResponse, answers: list[aiohttp.ClientResponse], upstream: _Calls
) -> None:
    """The n choices' chunks, each pumped into one fan-in, sent as the fan-in says."""
    queue: asyncio.Queue[tuple[int, Chunks | None]] = asyncio.Queue()

    async def pump(index: int, answer: aiohttp.ClientResponse) -> None:
        relay = _StreamRelay(upstream.context, index, upstream.record)
        try:
            async with aclosing(translated(answer, relay)) as chunks:
                async for piece in chunks:
                    queue.put_nowait((index, piece))
        finally:
            queue.put_nowait((index, None))

    pumps = [asyncio.create_task(pump(i, answer)) for i, answer in enumerate(answers)]
    fan_in = ChoicesFanIn(len(answers))
    try:
        while fan_in.phase is StreamPhase.OPEN:
            index, piece = await queue.get()
            out = fan_in.end(index) if piece is None else fan_in.feed(index, piece)
            if out:
                await response.write(upstream.encode(out))
    finally:
        for task in pumps:
            task.cancel()
