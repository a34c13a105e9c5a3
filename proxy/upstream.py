"""The upstream side: one pooled client session per replica, forwarded headers, failures as
errors, and each replica's health as the requests sent to it find it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from functools import partial
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web
from aiohttp.client_proto import ResponseHandler
from multidict import CIMultiDict
from yarl import URL

from diglot.proxy.config import UpstreamSettings
from diglot.proxy.limits import UpstreamSlots
from diglot.proxy.observability import CLIENT_GONE, CURRENT_RECORD, RequestLog, get_logger
from diglot.proxy.replies import json_response
from diglot.translators.errors import RequestError, is_openai_error, upstream_error_body

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by diglot itself on the way up: the body is re-sent decoded and uncompressed.
_NOT_FORWARDED_UP = HOP_BY_HOP | {
    "host",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "content-type",
    "x-request-id",
    "expect",
}
_NOT_RELAYED_DOWN = HOP_BY_HOP | {"x-request-id"}
REQUEST_ID = "x-request-id"
# A translated stream stops reading at its terminal event, before the body's end (the closing
# chunk): that tail is read so the connection can be reused; more, or later, than this and the
# connection is closed instead.
_TAIL_BYTES = 64 * 1024
_TAIL_SECONDS = 0.25
_EXCERPT = 200  # characters of a body quoted in an error message
_MAX_ERROR_BODY = 1024 * 1024
# What went wrong upstream, as counted in the log line and the metrics (a closed set of labels).
FAULT_KINDS = (
    "refused",  # no connection could be made
    "reset",  # the connection closed before an answer
    "timeout",
    "bad_json",  # an answer or stream chunk that is not the JSON it should be
    "bad_sse",  # a stream that is not server-sent events
    "bad_response",  # well-formed, but not an answer diglot can use (a redirect, a wrong shape)
    "broken_stream",  # the body or stream broke or ended before the answer was complete
    "error_event",  # the upstream put an error object in its stream
    "http_4xx",
    "http_5xx",
)
# What a replica is counted for (a closed set of labels): its own failures, not the request's.
REPLICA_FAULTS = ("refused", "timeout", "reset", "bad_response", "http_5xx")
_PROBE_TIMEOUT = 2.0  # longest a health probe waits for a connection
BACKOFF = (0.5, 30.0)  # a replica out of rotation is probed after this, doubling up to that
log = get_logger()


def upstream_failure(status: int, message: str, code: str, kind: str | None = None) -> RequestError:
    """502/504 for a failed upstream, counted against the request (timeout unless told)."""
    record = CURRENT_RECORD.get()
    if record is not None:
        record.upstream_fault(kind or ("timeout" if status == 504 else "bad_response"))
    return RequestError(message, code=code, status=status, error_type="server_error")


def upstream_json(raw: bytes) -> object:
    """A whole upstream answer's JSON; not JSON -> 502."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise upstream_failure(
            502, f"The upstream's answer is not JSON ({exc}).", "bad_upstream_response", "bad_json"
        ) from None


def not_the_api(what: str, raw: bytes, status: int) -> RequestError:
    """502 for a well-formed answer that is not what the API answers with, quoting its start."""
    return upstream_failure(
        502,
        f"The upstream answered {status} with JSON that is not {what}: {excerpt(raw)}",
        "bad_upstream_response",
        "bad_response",
    )


def excerpt(raw: bytes) -> str:
    """The start of an upstream body on one line, for an error message."""
    text = " ".join(raw[: _EXCERPT * 4].decode("utf-8", "replace").split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _send_failure(exc: Exception) -> RequestError:
    """The 502/504 for a request that got no answer."""
    if isinstance(exc, TimeoutError):
        return upstream_failure(504, "The upstream did not answer in time.", "upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = f"The upstream could not be reached: {exc}"
        return upstream_failure(502, message, "upstream_unreachable", "refused")
    if isinstance(exc, aiohttp.ClientResponseError):
        message = f"The upstream's answer is not valid HTTP: {' '.join(exc.message.split())}"
        return upstream_failure(502, message, "bad_upstream_response", "bad_response")
    message = f"The upstream closed the connection without answering: {exc}"
    return upstream_failure(502, message, "upstream_connection_lost", "reset")


def _replica_fault(exc: Exception) -> str:
    """What a request that got no answer counts against its replica."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "bad_response"
    return "reset"


def host_port(url: str) -> str:
    """A replica as /readyz and the metrics name it: the host:port of its URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Headers named in `Connection:` are hop-by-hop too."""
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))


def relay_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """The upstream's response headers as the client gets them in passthrough."""
    drop = _NOT_RELAYED_DOWN
    if "Connection" in upstream:
        drop = drop | _connection_tokens(upstream)
    if "Content-Encoding" in upstream:  # the client session decoded the body
        drop = drop | {"content-encoding", "content-length"}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in upstream.items():
        if key.lower() not in drop:
            out.add(key, value)
    return out


def rate_limit_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """Retry-After and x-ratelimit-* kept on translated answers and errors."""
    return {
        key: value
        for key, value in upstream.items()
        if (name := key.lower()) == "retry-after" or name.startswith("x-ratelimit-")
    }


class Upstream:
    """One backend URL, a replica of an upstream: its pooled ClientSession and its health.

    A replica that refuses a connection leaves the rotation of its upstream's replicas (its
    `siblings`) and is probed with backoff until it accepts one again.
    """

    def __init__(self, base: str, settings: UpstreamSettings, slots: UpstreamSlots) -> None:
        self.base = base
        self.name = settings.name  # the upstream it is a replica of
        self.replica = host_port(base)
        key = settings.api_key
        self._authorization = f"Bearer {key}" if key is not None else None
        self._not_forwarded = _NOT_FORWARDED_UP | ({"authorization"} if key is not None else set())
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        self._probe_timeout = min(settings.connect_timeout, _PROBE_TIMEOUT)
        self._root = URL(base)
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None
        self.slots = slots  # shared by the replicas of one upstream
        self.idle_timeout = settings.idle_timeout
        self.siblings: tuple[Upstream, ...] = (self,)  # its upstream's replicas, itself included
        self.in_flight = 0
        self.requests = 0  # exchanges sent to it, attempts that could not connect included
        self.faults = dict.fromkeys(REPLICA_FAULTS, 0)
        self.live = True
        self.backoff = BACKOFF
        self.on_return: Callable[[Upstream], None] | None = None
        self._back = asyncio.Event()
        self._back.set()
        self._probing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the pool; called from the app's startup (a session needs a running loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
            # Every client shares the pool: a cookie an answer sets goes down to its own client
            # only, never up again with anyone's request.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with suppress(asyncio.CancelledError):
                await self._probing
            self._probing = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, query: str = "") -> URL:
        """`{upstream}{path}`, parsed once per path."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base + path)
        return url.with_query(query) if query else url

    def rebase(self, url: URL, other: Upstream) -> URL | None:
        """A URL made for replica `other` as this replica's; None when it is not under its base."""
        root = other._root
        prefix = root.raw_path.rstrip("/")
        if (url.host, url.port) != (root.host, root.port) or not url.raw_path.startswith(prefix):
            return None
        return URL(str(self._root).rstrip("/") + url.raw_path_qs[len(prefix) :], encoded=True)

    def headers(
        self, incoming: Mapping[str, str], request_id: str, content_type: str | None
    ) -> dict[str, str]:
        """What goes up: the client's end-to-end headers, our request id, the configured key."""
        drop = self._not_forwarded
        if "Connection" in incoming:
            drop = drop | _connection_tokens(incoming)
        out: dict[str, str] = {}
        for key, value in incoming.items():
            if key.lower() not in drop:
                out[key] = value
        if content_type is not None:
            out["Content-Type"] = content_type
        out["Accept-Encoding"] = "identity"
        out[REQUEST_ID] = request_id
        if self._authorization is not None:
            out["Authorization"] = self._authorization
        return out

    def open(
        self,
        method: str,
        url: URL,
        headers: dict[str, str],
        body: bytes | None,
        *,
        passthrough: bool,
    ) -> Exchange:
        """One exchange in one of the upstream's in-flight slots, held to its last byte.

        An error status is the client's answer (`UpstreamRefused`): relayed as sent when
        `passthrough` and OpenAI-shaped, else normalised; a translated request also refuses a
        3xx (502), which a passthrough relays as it is.
        """
        return Exchange(self, method, url, headers, body, passthrough)

    def request(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> Awaitable[aiohttp.ClientResponse]:
        """The request itself, on this replica's pool (aiohttp's awaitable as it is: a coroutine
        of diglot's own around it would be one more frame every step of every request passes)."""
        assert self._session is not None, "Upstream.start() was not awaited"
        return self._session.request(method, url, headers=headers, data=body, allow_redirects=False)

    async def status_of(self, method: str, path: str, body: bytes | None) -> int | None:
        """The status this replica answers a request of diglot's own with; None if unreachable."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        try:
            async with asyncio.timeout(self._probe_timeout * 2):
                response = await self.request(method, self.url(path), headers, body)
                response.release()
        except (TimeoutError, aiohttp.ClientError):
            return None
        return response.status

    def refused(self, error: object) -> None:
        """No connection could be made: out of the rotation until a probe connects again."""
        if not self.live:
            return
        self.live = False
        self._back.clear()
        log.warning("replica_down", upstream=self.name, replica=self.replica, error=str(error))
        self._probing = asyncio.get_running_loop().create_task(self._probe_until_back())

    def answered(self) -> None:
        """A connection was made: in the rotation again."""
        if self.live:
            return
        self.live = True
        self._back.set()
        if self._probing is not None and self._probing is not asyncio.current_task():
            self._probing.cancel()
        self._probing = None
        log.info("replica_up", upstream=self.name, replica=self.replica)
        if self.on_return is not None:
            self.on_return(self)

    async def back(self) -> None:
        """Wait until the replica is in the rotation."""
        await self._back.wait()

    async def check(self) -> str | None:
        """A health check: a TCP connection opens (None), or why not; the rotation follows it."""
        reason = await self.probe()
        if reason is None:
            self.answered()
        else:
            self.refused(reason)
        return reason

    async def probe(self) -> str | None:
        """A TCP connect: cheap, needs no key, and proves the backend listens."""
        host, port = self._root.host or "", self._root.port or 80
        timeout = self._probe_timeout
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return f"upstream {host}:{port} did not accept a connection within {timeout:g}s"
        except OSError as exc:
            return f"upstream {host}:{port} is unreachable: {exc.strerror or exc}"
        writer.close()
        return None

    async def _probe_until_back(self) -> None:
        """Probe with backoff, doubling from the first wait up to the longest, until it answers."""
        wait, longest = self.backoff
        while not self.live:
            await asyncio.sleep(wait)
            if await self.probe() is None:
                self.answered()
            wait = min(wait * 2, longest)


class UpstreamRefused(Exception):
    """The upstream answered with an error status: the client's reply, already shaped."""

    def __init__(self, reply: web.Response) -> None:
        super().__init__(reply.status)
        self.reply = reply


class Exchange:
    """`async with upstream.open(...) as response`: a slot, the request, timing, and release.

    Unreachable -> 502, no answer in time -> 504, an error status -> `UpstreamRefused`. The
    request's record gets the status and time to answer of its first exchange, or of one
    that failed. A request that could not connect goes to another live replica of the same
    upstream (or once more to the same one when there is none); one that reached a replica is
    never sent again. A plain class rather than generator-based context managers, since every
    request passes through it.
    """

    __slots__ = (
        "_body",
        "_headers",
        "_method",
        "_passthrough",
        "_record",
        "_response",
        "_tried",
        "_upstream",
        "_url",
        "_watch",
    )

    def __init__(
        self,
        upstream: Upstream,
        method: str,
        url: URL,
        headers: dict[str, str],
        body: bytes | None,
        passthrough: bool,
    ) -> None:
        self._upstream = upstream
        self._method = method
        self._url = url
        self._headers = headers
        self._body = body
        self._passthrough = passthrough
        self._record: RequestLog | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._watch: IdleWatch | None = None
        self._tried: list[Upstream] | None = None  # replicas that refused, once one has

    async def __aenter__(self) -> aiohttp.ClientResponse:
        upstream = self._upstream
        opened = time.perf_counter()
        await upstream.slots.acquire()
        record = self._record = CURRENT_RECORD.get()
        started = time.perf_counter()
        try:
            response = await self._send(record)
        except BaseException:
            upstream.slots.release()
            raise
        upstream = self._upstream  # the replica that answered
        self._response = response
        status = response.status
        if status >= 500:
            upstream.faults["http_5xx"] += 1
        if record is not None:
            if record.upstream_started is None:
                record.upstream_started = started
            answered = record.upstream_answered = time.perf_counter()
            if record.upstream_status is None or status >= 300:
                record.upstream_status = status
                record.upstream_ms = (answered - opened) * 1000
            response.content.on_eof(partial(_ended, record))
        if status >= 300 and (status >= 400 or not self._passthrough):
            await self._refuse(response)
        protocol = response.connection.protocol if response.connection else None
        if protocol is not None and response.content_type == "text/event-stream":
            protocol.read_timeout = None  # the gaps between events are watched instead
            loop = asyncio.get_running_loop()
            self._watch = IdleWatch(loop, response, protocol, upstream.idle_timeout)
        return response

    async def _send(self, record: RequestLog | None) -> aiohttp.ClientResponse:
        """Sent to the first replica that accepts a connection; `_upstream` is then that one."""
        replica = self._upstream
        while True:
            replica.requests += 1
            replica.in_flight += 1
            try:
                response = await replica.request(self._method, self._url, self._headers, self._body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                replica.in_flight -= 1  # no connection: not a byte of the request went out
                refused = isinstance(exc, aiohttp.ClientConnectorError)
                replica.faults["refused" if refused else "timeout"] += 1
                following = None if isinstance(exc, aiohttp.ClientSSLError) else self._after(exc)
                if following is None:
                    raise _send_failure(exc) from None
                if record is not None:
                    record.upstream_retries += 1
                replica = self._upstream = following
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                replica.in_flight -= 1
                replica.faults[_replica_fault(exc)] += 1
                raise _send_failure(exc) from None
            except BaseException:
                replica.in_flight -= 1
                raise
            if not replica.live:
                replica.answered()
            return response

    def _after(self, exc: aiohttp.ClientConnectionError) -> Upstream | None:
        """Where to send after the current replica made no connection: a live replica not tried
        yet (the least busy), else, if it refused at the first try, the same one once more."""
        refused = self._upstream
        refused.refused(exc)
        tried = self._tried = [*(self._tried or ()), refused]
        others = [r for r in refused.siblings if r.live and r not in tried]
        if others:
            following = min(others, key=_busyness)
            url = following.rebase(self._url, refused)
            if url is not None:
                self._url = url
                return following
        again = len(tried) == 1 and isinstance(exc, aiohttp.ClientConnectorError)
        return refused if again else None

    async def _refuse(self, response: aiohttp.ClientResponse) -> NoReturn:
        """The exchange ends here: the error reply raised, the connection released first."""
        try:
            if response.status < 400:
                raise upstream_failure(
                    502, f"The upstream answered HTTP {response.status}.", "bad_upstream_response"
                )
            record = self._record
            request_id = record.request_id if record is not None else ""
            if self._passthrough:
                reply = await _passthrough_error_reply(response, request_id)
            else:
                reply = await _translated_error_reply(response, request_id)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await self.__aexit__(None, None, None)
        raise UpstreamRefused(reply)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        response, record = self._response, self._record
        assert response is not None
        try:
            client_gone = record is not None and record.error == CLIENT_GONE
            if exc_type is None and not client_gone and not response.content.is_eof():
                await _read_tail(response)
        finally:
            if self._watch is not None:
                self._watch.stop()
            if record is not None and not response.content.is_eof():
                _ended(record)
            response.release()
            self._upstream.in_flight -= 1
            self._upstream.slots.release()


_IDLE_LOOKS = 4  # a silent stream is noticed at most a quarter of the timeout late


class IdleWatch:
    """An event stream's idle timeout, looked at a few times per timeout.

    aiohttp's read timeout cancels and schedules a timer for every piece it receives, which a
    stream of small events paid for once per event; this one only counts the bytes that came.
    """

    __slots__ = ("_handle", "_idle", "_loop", "_protocol", "_quiet_since", "_response", "_seen")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        response: aiohttp.ClientResponse,
        protocol: ResponseHandler,
        idle: float,
    ) -> None:
        self._loop = loop
        self._response = response
        self._protocol = protocol
        self._idle = idle
        self._seen = response.content.total_bytes
        self._quiet_since = self._loop.time()
        self._handle = self._loop.call_later(idle / _IDLE_LOOKS, self._look)

    def _look(self) -> None:
        content = self._response.content
        if content.is_eof() or content.exception() is not None:
            return
        now = self._loop.time()
        if content.total_bytes != self._seen:
            self._seen = content.total_bytes
            self._quiet_since = now
        elif now - self._quiet_since >= self._idle:
            error = aiohttp.ServerTimeoutError(f"The upstream sent nothing for {self._idle:g} s.")
            self._protocol.set_exception(error)  # the connection is closed, not pooled
            content.set_exception(error)
            return
        self._handle = self._loop.call_at(now + self._idle / _IDLE_LOOKS, self._look)

    def stop(self) -> None:
        self._handle.cancel()


def _busyness(replica: Upstream) -> int:
    return replica.in_flight


def _ended(record: RequestLog) -> None:
    record.upstream_ended = time.perf_counter()


async def _read_tail(response: aiohttp.ClientResponse) -> None:
    """Finish a body read up to its answer's end only, so its connection is pooled, not closed."""
    left = _TAIL_BYTES
    with suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_TAIL_SECONDS):
            while left > 0 and (piece := await response.content.readany()):
                left -= len(piece)


async def _translated_error_reply(
    upstream: aiohttp.ClientResponse, request_id: str
) -> web.Response:
    """Same status, an OpenAI error body, Retry-After and x-ratelimit-* kept."""
    _, payload = await _error_of(upstream)
    return _normalised(upstream, payload, request_id)


async def _passthrough_error_reply(
    upstream: aiohttp.ClientResponse, request_id: str
) -> web.Response:
    """An error already in OpenAI's shape goes out byte for byte; any other is normalised."""
    raw, payload = await _error_of(upstream)
    if not is_openai_error(payload):
        return _normalised(upstream, payload, request_id)
    headers = relay_headers(upstream.headers)
    headers.popall("Content-Length", None)  # aiohttp sets it from the body
    headers[REQUEST_ID] = request_id
    return web.Response(body=raw, status=upstream.status, reason=upstream.reason, headers=headers)


async def _error_of(upstream: aiohttp.ClientResponse) -> tuple[bytes, object]:
    """The error body's bytes (bounded) and their JSON, or the bytes again when not JSON."""
    try:
        raw = await upstream.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, raw


def _normalised(upstream: aiohttp.ClientResponse, payload: object, request_id: str) -> web.Response:
    headers = rate_limit_headers(upstream.headers)
    headers[REQUEST_ID] = request_id
    return json_response(upstream_error_body(upstream.status, payload), upstream.status, headers)


def require_event_stream(response: aiohttp.ClientResponse) -> None:
    """A streamed request needs events back; another declared type is a 502 naming it."""
    if "Content-Type" in response.headers and response.content_type != "text/event-stream":
        raise upstream_failure(
            502,
            f"The upstream answered a streaming request with {response.content_type}, "
            "not an event stream.",
            "bad_upstream_response",
            "bad_sse",
        )


async def read_all(response: aiohttp.ClientResponse) -> bytes:
    """A whole (non-streamed) upstream body; a broken or stalled one -> 502/504."""
    try:
        return await response.read()
    except TimeoutError:
        raise upstream_failure(
            504, "The upstream did not finish its answer in time.", "upstream_timeout"
        ) from None
    except aiohttp.ClientError as exc:
        raise upstream_failure(
            502, f"The upstream connection broke: {exc}", "upstream_error", "broken_stream"
        ) from None


async def relay_whole(
    upstream: Upstream,
    method: str,
    url: URL,
    headers: dict[str, str],
    body: bytes | None,
    request_id: str,
) -> web.Response:
    """A passed-through request whose answer is small JSON: relayed whole, status and headers
    as the upstream sent them (its error replies too)."""
    try:
        async with upstream.open(method, url, headers, body, passthrough=True) as answer:
            payload = await read_all(answer)
            relayed = relay_headers(answer.headers)
            relayed[REQUEST_ID] = request_id
            relayed.popall("Content-Length", None)
            return web.Response(body=payload, status=answer.status, headers=relayed)
    except UpstreamRefused as refused:
        return refused.reply
