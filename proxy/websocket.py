"""WebSocket mode: `GET /v1/responses` upgraded, each `response.create` frame one streamed turn.

A turn's events are the ones its HTTP stream would carry, one JSON text frame each. Turns of a
lane (`stream_id`, or none) run one at a time in order; lanes run side by side. The connection
keeps its own responses (ConnectionStore), so `store: false` ones can be continued on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from diglot.proxy.config import Config
from diglot.proxy.conversation import tenant_of
from diglot.proxy.handlers import socket_turns
from diglot.proxy.jsonenc import dumps
from diglot.proxy.metrics import METRICS, Metrics
from diglot.proxy.observability import (
    CLIENT_GONE,
    CURRENT_RECORD,
    RequestLog,
    get_logger,
    request_line_writer,
)
from diglot.proxy.pump import Emit
from diglot.proxy.responses_over_chat import responses_turn
from diglot.proxy.socket_relay import SocketRelay, upstream_socket
from diglot.proxy.sse import DONE, SSEDecoder, SSEError, SSEEvent
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.store.connection import ConnectionStore
from diglot.proxy.upstream import (
    UpstreamRefused,
    require_event_stream,
    upstream_failure,
)
from diglot.translators.errors import RequestError, error_body
from diglot.translators.ids import REQUEST_PREFIX

log = get_logger()
LIFETIME = 60 * 60.0  # seconds a connection lives; then it closes with CLOSE_LIFETIME
HEARTBEAT = 30.0  # seconds between pings; a peer that does not answer one is gone
CLOSE_LIFETIME = (1000, "connection lifetime of 60 minutes reached; reconnect to go on")
CLOSE_GOING_AWAY = (1001, "diglot is shutting down")
ROUTE = "/v1/responses (websocket)"
_HANDSHAKE = re.compile("sec-websocket-", re.IGNORECASE)
_FIN_TEXT = 0x81
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class TurnRunner(Protocol):
    """One turn, streamed through `emit`; an error answer the upstream gave instead, or None."""

    async def __call__(
        self,
        proxy: Proxy,
        record: RequestLog,
        headers: Mapping[str, str],
        raw: bytes,
        *,
        store: ConnectionStore,
        generate: bool,
        emit: Emit,
    ) -> web.Response | None: ...


class Served(Protocol):
    """A client's socket as diglot serves it: turn by turn, or relayed to the upstream's."""

    async def serve(self) -> None: ...

    async def end(self, close: tuple[int, str]) -> None: ...


class Sockets:
    """The app's open connections: counted in the metrics, drained on shutdown."""

    def __init__(self, metrics: Metrics) -> None:
        self.open: set[Served] = set()
        self.metrics = metrics

    def add(self, connection: Served) -> None:
        self.open.add(connection)
        self.metrics.active_websockets.inc()

    def remove(self, connection: Served) -> None:
        self.open.discard(connection)
        self.metrics.active_websockets.dec()

    async def drain(self, _: web.Application) -> None:
        """On shutdown: every connection finishes its running turns, then goes away."""
        await asyncio.gather(*(c.end(CLOSE_GOING_AWAY) for c in list(self.open)))


SOCKETS = web.AppKey("sockets", Sockets)


def install_sockets(app: web.Application, metrics: Metrics) -> None:
    sockets = app[SOCKETS] = Sockets(metrics)
    app.on_shutdown.append(sockets.drain)


def wants_websocket(request: web.Request) -> bool:
    """An upgrade to WebSocket asked for (any other GET of the path is not allowed)."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def serve_socket(request: web.Request, run_turn: TurnRunner) -> web.StreamResponse:
    """Upgrade (the client key was checked before), then serve frames until either side ends.

    In front of a Responses upstream that has a WebSocket of its own, frames are relayed to it;
    otherwise diglot runs each turn itself.
    """
    proxy = request.app[PROXY]
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT, max_msg_size=proxy.config.max_body_bytes, compress=True
    )
    ready = ws.can_prepare(request)
    if not ready.ok:
        raise RequestError("The WebSocket upgrade request is not valid.", None, "bad_upgrade", 400)
    headers = _turn_headers(request.headers)
    relayed = None
    if not proxy.config.upstreams and proxy.config.upstream_api == "responses":
        relayed = await upstream_socket(proxy, headers, request[RECORD].request_id)
    served: Served
    if relayed is None:
        served = Connection(ws, request, headers, run_turn)
    else:
        write_line = request_line_writer() if log.is_enabled_for(logging.INFO) else None
        served = SocketRelay(ws, relayed[1], proxy, request.app[METRICS], write_line, ROUTE)
    try:
        await ws.prepare(request)
        request[RECORD].transport = "websocket"  # its turns are logged, not the connection
        sockets = request.app[SOCKETS]
        sockets.add(served)
        try:
            await served.serve()
        finally:
            sockets.remove(served)
    finally:
        if relayed is not None:
            await relayed[0].close()
    return ws


class Connection:
    """One client's socket: its lanes, its responses, its lifetime."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        headers: CIMultiDict[str],
        run: TurnRunner,
    ) -> None:
        self.ws = ws
        self.proxy = request.app[PROXY]
        self.metrics = request.app[METRICS]
        self.headers = headers
        self.transport = request.transport
        self.protocol = request.protocol
        self.run = run
        self.store = ConnectionStore(self.proxy.store)
        self.lanes: dict[str | None, Lane] = {}
        self.closing: asyncio.Future[None] | None = None  # the lifetime's end, once it came
        self.ending = False  # no new turns: the connection is closing once the running ones end
        self.write_line = request_line_writer() if log.is_enabled_for(logging.INFO) else None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        lifetime = loop.call_later(
            LIFETIME, lambda: asyncio.ensure_future(self.end(CLOSE_LIFETIME))
        )
        try:
            async for message in self.ws:
                if message.type is WSMsgType.TEXT:
                    await self.frame(message.data)
                elif message.type is WSMsgType.BINARY:
                    await self.refuse(
                        None, "Frames must be JSON text frames.", None, "invalid_frame"
                    )
        finally:
            lifetime.cancel()
            if not self.ending:  # the client left: its running turns stop, upstream requests too
                for lane in self.lanes.values():
                    lane.cancel()
            await self.store.close()

    def outlived(self) -> None:
        self.closing = asyncio.ensure_future(self.end(CLOSE_LIFETIME))

    async def end(self, close: tuple[int, str]) -> None:
        """Take no more turns, let the running ones finish, then close with `close`."""
        if self.ending:
            return
        self.ending = True
        running = [lane.task for lane in self.lanes.values() if lane.task is not None]
        if running:
            await asyncio.wait(running)
        await self.ws.close(code=close[0], message=close[1].encode())

    async def frame(self, data: str) -> None:
        """One client frame: a `response.create` goes to its lane; anything else is an error."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            await self.refuse(None, "The frame is not valid JSON.", None, "invalid_json")
            return
        if not isinstance(event, dict):
            await self.refuse(None, "The frame must be a JSON object.", None, "invalid_frame")
            return
        lane_id = event.get("stream_id")
        if lane_id is not None and not isinstance(lane_id, str):
            await self.refuse(None, "Invalid 'stream_id': expected a string.", "stream_id", None)
            return
        if event.get("type") != "response.create":
            message = f"Unknown event type {event.get('type')!r}: expected 'response.create'."
            await self.refuse(lane_id, message, "type", "unknown_event")
            return
        if self.ending:
            await self.refuse(lane_id, "The connection is closing.", None, "connection_closing")
            return
        lane = self.lanes.get(lane_id)
        if lane is None:
            lane = self.lanes[lane_id] = Lane(self, lane_id)
        lane.submit(event)

    async def send(self, events: list[dict[str, Any]], lane_id: str | None) -> None:
        """Events as text frames, tagged with their lane when it has an id, in one write.

        Written straight to the transport, as aiohttp's writer would write them uncompressed
        (RFC 7692 lets any message go uncompressed): one call per event through the writer cost
        a quarter more CPU than the same stream over SSE.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(text_frames(events, lane_id))
        if self.protocol.writing_paused:
            await self.protocol._drain_helper()

    async def refuse(
        self, lane_id: str | None, message: str, param: str | None, code: str | None
    ) -> None:
        await self.send(
            [error_frame(400, error_body(message, "invalid_request_error", param, code))], lane_id
        )

    async def turn(self, event: dict[str, Any], lane_id: str | None) -> None:
        """One `response.create`, with its own request record, log line and metrics."""
        record = RequestLog(
            request_id=self.proxy.new_id(REQUEST_PREFIX),
            started=time.perf_counter(),
            transport="websocket",
        )
        token = CURRENT_RECORD.set(record)
        status = 200
        previous = event.get("previous_response_id")
        try:
            raw, generate = turn_body(event)
            refused = await self.run(
                self.proxy, record, self.headers, raw, store=self.store, generate=generate,
                emit=lambda events: self.send(events, lane_id),
            )  # fmt: skip
            if refused is not None:
                status = refused.status
                await self.send([error_frame(status, _body_of(refused))], lane_id)
        except RequestError as exc:
            status, record.error = exc.status, exc.code or exc.message
            await self.send([error_frame(exc.status, exc.body())], lane_id)
        except asyncio.CancelledError:
            status, record.error = 499, CLIENT_GONE
            raise
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            status, record.error = 499, CLIENT_GONE
        except Exception:
            log.exception("unexpected_error", request_id=record.request_id)
            status = 500
            body = error_body("The server had an error processing your request.", "server_error")
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
                await self.send([error_frame(500, body)], lane_id)
        finally:
            CURRENT_RECORD.reset(token)
            if status >= 400 and isinstance(previous, str):
                await self.store.forget(tenant_of(self.headers), previous)
            self.finished(record, status)

    def finished(self, record: RequestLog, status: int) -> None:
        ended = time.perf_counter()
        record.first_byte = record.first_byte or ended
        if self.write_line is not None:
            self.write_line("WS", "/v1/responses", record, status, ended)
        self.metrics.finished(ROUTE, record, status, ended)


class Lane:
    """Turns of one `stream_id`, run one after the other in the order they came."""

    def __init__(self, connection: Connection, lane_id: str | None) -> None:
        self.connection = connection
        self.lane_id = lane_id
        self.waiting: deque[dict[str, Any]] = deque()
        self.task: asyncio.Task[None] | None = None

    def submit(self, event: dict[str, Any]) -> None:
        self.waiting.append(event)
        if self.task is None:
            self.task = asyncio.create_task(self.work())

    async def work(self) -> None:
        try:
            while self.waiting:
                await self.connection.turn(self.waiting.popleft(), self.lane_id)
        finally:
            self.task = None

    def cancel(self) -> None:
        self.waiting.clear()
        if self.task is not None:
            self.task.cancel()


def _turn_headers(upgrade: Mapping[str, str]) -> CIMultiDict[str]:
    """The upgrade request's headers as each turn's: without the handshake's own."""
    return CIMultiDict(
        (key, value)
        for key, value in upgrade.items()
        if not key.lower().startswith("sec-websocket")
    )


def text_frames(events: list[dict[str, Any]], lane_id: str | None) -> bytes:
    """Unmasked, final, uncompressed text frames (RFC 6455 section 5.2), one per event."""
    parts: list[bytes] = []
    for event in events:
        if lane_id is not None:
            event["stream_id"] = lane_id
        payload = dumps(event)
        size = len(payload)
        if size < 126:
            parts.append(_SHORT.pack(_FIN_TEXT, size))
        elif size < 65536:
            parts.append(_MEDIUM.pack(_FIN_TEXT, 126, size))
        else:
            parts.append(_LONG.pack(_FIN_TEXT, 127, size))
        parts.append(payload)
    return b"".join(parts)


def turn_body(event: dict[str, Any]) -> tuple[bytes, bool]:
    """The `POST /v1/responses` body of a `response.create` frame, and whether to generate."""
    generate = event.pop("generate", True)
    if generate is None:
        generate = True
    if not isinstance(generate, bool):
        raise RequestError("Invalid 'generate': expected a boolean.", "generate")
    if event.pop("background", None):
        raise RequestError(
            "Background responses are not available over WebSocket; use POST /v1/responses.",
            "background",
            "unsupported_parameter",
        )
    for envelope in ("type", "stream_id", "stream"):
        event.pop(envelope, None)
    event["stream"] = True
    return dumps(event), generate


def error_frame(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's WebSocket error event: the HTTP status beside the error object."""
    return {"type": "error", "status": status, "error": body["error"]}


def _body_of(response: web.Response) -> Mapping[str, Any]:
    """The error body of an upstream refusal that HTTP would have answered with."""
    raw = response.body if isinstance(response.body, bytes) else b""
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body
    return error_body(f"The upstream answered HTTP {response.status}.", "server_error")


async def passthrough_turn(
    proxy: Proxy,
    record: RequestLog,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    store: ConnectionStore,
    generate: bool,
    emit: Emit,
) -> web.Response | None:
    """In front of a Responses upstream: the turn as an HTTP stream, its events as frames."""
    record.direction = "passthrough"
    record.stream = True
    if not generate:
        raise RequestError(
            "'generate': false is not available in front of this upstream: diglot sends each "
            "WebSocket turn to it as an HTTP request.",
            "generate",
            "unsupported_parameter",
        )
    upstream_headers = proxy.upstream.headers(headers, record.request_id, "application/json")
    url = proxy.upstream.url("/responses")
    try:
        async with proxy.upstream.open(
            "POST", url, upstream_headers, raw, passthrough=True
        ) as upstream:
            require_event_stream(upstream)
            decoder = SSEDecoder()
            async for data in upstream.content.iter_any():
                events = _events(decoder.feed(data))
                if events:
                    await emit(events)
            await emit(_events(decoder.close()))
    except UpstreamRefused as refused:
        return refused.reply
    except SSEError as exc:
        raise upstream_failure(
            502, f"The upstream stream is malformed: {exc}", "bad_upstream_response", "bad_sse"
        ) from None
    return None


def _events(sses: list[SSEEvent]) -> list[dict[str, Any]]:
    """The JSON objects of a Responses upstream's events, as they are."""
    events = []
    for sse in sses:
        if sse.data == DONE:
            continue
        try:
            event = orjson.loads(sse.data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            raise upstream_failure(
                502,
                "The upstream sent a stream event that is not a JSON object.",
                "bad_upstream_response",
                "bad_json",
            )
        events.append(event)
    return events


def socket_runner(config: Config) -> TurnRunner:
    """How a turn runs in front of this upstream (of each turn's, with several)."""
    if config.upstreams:
        return socket_turns(passthrough_turn)
    return responses_turn if config.upstream_api == "chat" else passthrough_turn
