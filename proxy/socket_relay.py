"""WebSocket mode relayed to a Responses upstream's own WebSocket: frames untouched both ways.

Like passthrough over HTTP, only each turn's record is read off the frames: a `response.create`
opens one in its lane, the upstream event that ends that lane's response closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping

import aiohttp
import msgspec
from aiohttp import WSMsgType, web

from diglot.proxy.metrics import Metrics
from diglot.proxy.observability import LineWriter, RequestLog, get_logger
from diglot.proxy.state import Proxy
from diglot.translators.ids import REQUEST_PREFIX
from diglot.translators.stream.lifecycle import ends_response

log = get_logger()
_CONNECT_SECONDS = 10.0


class _Frame(msgspec.Struct):
    """What the records need of a frame; the rest is relayed unread."""

    type: str | None = None
    stream_id: str | None = None
    model: str | None = None
    status: int | None = None


_frame = msgspec.json.Decoder(_Frame)


async def upstream_socket(
    proxy: Proxy, headers: Mapping[str, str], request_id: str
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse] | None:
    """The upstream's WebSocket for this client, or None when it offers none."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=_CONNECT_SECONDS))
    forwarded = proxy.upstream.headers(headers, request_id, None)
    try:
        upstream = await session.ws_connect(
            proxy.upstream.url("/responses"),
            headers=forwarded,
            max_msg_size=proxy.config.max_body_bytes,
            autoping=True,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        await session.close()
        log.info("upstream_websocket_unavailable", request_id=request_id, reason=str(exc))
        return None
    return session, upstream


class SocketRelay:
    """One client socket and its upstream socket, until either side closes."""

    def __init__(
        self,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        proxy: Proxy,
        metrics: Metrics,
        write_line: LineWriter | None,
        route: str,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.proxy = proxy
        self.metrics = metrics
        self.write_line = write_line
        self.route = route
        self.turns: dict[str | None, deque[RequestLog]] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    async def serve(self) -> None:
        downstream = asyncio.create_task(self._down())
        try:
            async for message in self.client:
                if message.type is WSMsgType.TEXT:
                    self._opened(message.data)
                    await self.upstream.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await self.upstream.send_bytes(message.data)
        finally:
            await self.upstream.close()
            downstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await downstream
            for lane in self.turns.values():
                for record in lane:
                    self._finished(record, 499)

    async def end(self, close: tuple[int, str]) -> None:
        """Let the running turns finish, then close the client's socket (and so the upstream's)."""
        await self.idle.wait()
        await self.client.close(code=close[0], message=close[1].encode())

    async def _down(self) -> None:
        async for message in self.upstream:
            if message.type is WSMsgType.TEXT:
                await self.client.send_str(message.data)
                self._seen(message.data)
            elif message.type is WSMsgType.BINARY:
                await self.client.send_bytes(message.data)
        code = self.upstream.close_code or aiohttp.WSCloseCode.INTERNAL_ERROR
        await self.client.close(code=code, message=b"the upstream closed its WebSocket")

    def _opened(self, data: str) -> None:
        frame = _read(data)
        if frame is None or frame.type != "response.create":
            return
        record = RequestLog(
            request_id=self.proxy.new_id(REQUEST_PREFIX),
            started=time.perf_counter(),
            transport="websocket",
            direction="passthrough",
            model=frame.model,
            stream=True,
        )
        self.turns.setdefault(frame.stream_id, deque()).append(record)
        self.idle.clear()

    def _seen(self, data: str) -> None:
        frame = _read(data)
        if frame is None or not ends_response(frame.type):
            return
        lane = self.turns.get(frame.stream_id)
        if not lane:
            return
        status = frame.status or (400 if frame.type == "error" else 200)
        self._finished(lane.popleft(), status)
        if not any(self.turns.values()):
            self.idle.set()

    def _finished(self, record: RequestLog, status: int) -> None:
        ended = time.perf_counter()
        if self.write_line is not None:
            self.write_line("WS", "/v1/responses", record, status, ended)
        self.metrics.finished(self.route, record, status, ended)


def _read(data: str) -> _Frame | None:
    try:
        return _frame.decode(data)
    except msgspec.DecodeError:
        return None
