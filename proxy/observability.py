"""Structured logs: JSON lines in production, key=value on a terminal; one line per request."""

from __future__ import annotations

import asyncio
import datetime
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, BinaryIO, ClassVar, Literal, cast

import msgspec
import structlog

from diglot.proxy.jsonenc import dumps
from diglot.translators.context import Dropped

LOGGER_NAME = "diglot"
# structlog's timestamps: ISO 8601 in UTC, which msgspec writes as structlog does, Z and all.
_at, _UTC = datetime.datetime.fromtimestamp, datetime.UTC
CLIENT_GONE = "client disconnected"
Direction = Literal["passthrough", "responses->chat", "chat->responses", "local"]
Transport = Literal["http", "websocket"]


class _JsonLines:
    """Where JSON log lines go once configured: request lines are written here directly."""

    stream: BinaryIO | None = None
    # Requests ended whose lines are not written yet: (method, path, record, status, ended,
    # wall-clock time of the end).
    pending: ClassVar[list[tuple[str, str, RequestLog, int, float, float]]] = []
    # Other threads (the SQLite store's) log too, and render the waiting lines as they do.
    lock = threading.Lock()
    flush_due = False


# How long a request line may wait before it is written: under load, one write call then carries
# many lines, rendered together. Any other log line writes them first, so lines keep their order.
FLUSH_AFTER = 0.05
LineWriter = Callable[[str, str, "RequestLog", int, float], None]


def configure_logging(log_format: str, level: str) -> None:
    """Set up structlog once at startup; request handling never touches configuration."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    stream = _JsonLines.stream = _buffered(sys.stderr.buffer) if use_json else None
    _JsonLines.pending.clear()
    _JsonLines.flush_due = False
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if stream is not None:
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(cast(BinaryIO, _AfterRequestLines(stream)))
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


class _Unclosing(io.BufferedWriter):
    """A buffer over stderr that, when dropped, flushes it but leaves it open."""

    def close(self) -> None:
        self.flush()


class _AfterRequestLines:
    """What structlog writes its lines to: the request lines waiting are written first."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        _render_pending()
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def _buffered(stream: BinaryIO) -> BinaryIO:
    """stderr's bytes with a buffer, which PYTHONUNBUFFERED (as in the Dockerfile) takes away:
    without one, each request line would cost a write call of its own."""
    if isinstance(stream, io.RawIOBase):
        return _Unclosing(stream, buffer_size=1 << 16)
    return stream


def get_logger() -> Any:
    """diglot's logger (a structlog bound logger)."""
    return structlog.get_logger(LOGGER_NAME)


def request_line_writer() -> LineWriter:
    """How the per-request line is written, chosen once per route.

    With JSON logs, the request's end is noted and its line rendered later, with the others
    that ended within FLUSH_AFTER, into one write call: the same line structlog would write
    (fields, event, level, timestamp). Rendered one by one as each request ended, the lines
    cost more than the rest of a passed-through request's own work.
    """
    if _JsonLines.stream is None:
        info = get_logger().info

        def log_now(method: str, path: str, record: RequestLog, status: int, ended: float) -> None:
            info("request", **request_line(method, path, record, status, ended).fields())

        return log_now

    def note(method: str, path: str, record: RequestLog, status: int, ended: float) -> None:
        kept = msgspec.structs.replace(record)  # as it ended, whatever changes it later
        with _JsonLines.lock:
            _JsonLines.pending.append((method, path, kept, status, ended, time.time()))
        if not _JsonLines.flush_due:
            _JsonLines.flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_AFTER, flush_request_lines)

    return note


_encode_line = msgspec.json.Encoder().encode


def _render_pending() -> None:
    """The request lines waiting, written to the log stream's buffer in the order they ended."""
    with _JsonLines.lock:
        pending, stream = _JsonLines.pending, _JsonLines.stream
        if not pending or stream is None:
            return
        rendered = []
        for method, path, record, status, ended, at in pending:
            line = request_line(method, path, record, status, ended)
            line.timestamp = _at(at, _UTC)
            rendered.append(_encode_line(line))
        pending.clear()
        rendered.append(b"")
        stream.write(b"\n".join(rendered))


def flush_request_lines() -> None:
    """Write out the request lines waiting."""
    _JsonLines.flush_due = False
    _render_pending()
    if _JsonLines.stream is not None:
        _JsonLines.stream.flush()


class RequestLog(msgspec.Struct):
    """What one request's log line reports; handlers fill it in as they learn things.

    Times are `time.perf_counter()` readings; the metrics are derived from them at request end.
    """

    request_id: str
    direction: Direction = "local"
    model: str | None = None
    stream: bool | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    started: float = 0.0
    first_byte: float | None = None  # the client's response headers went out
    streaming: bool = False  # an event stream was opened to the client
    upstream_started: float | None = None
    upstream_answered: float | None = None  # the upstream's response headers arrived
    upstream_ended: float | None = None  # the upstream's body ended (or was given up on)
    upstream_error: str | None = None  # one of proxy.upstream.FAULT_KINDS
    upstream_retries: int = 0
    dropped: tuple[str, ...] = ()  # request fields dropped in translation
    transport: Transport = "http"

    def note_dropped(self, dropped: Sequence[Dropped]) -> None:
        """Remember and log each request field translation dropped (a 400 had it been strict)."""
        self.dropped = tuple(field.param for field in dropped)
        for field in dropped:
            get_logger().warning(
                "field_dropped", request_id=self.request_id, param=field.param, reason=field.reason
            )

    def upstream_fault(self, kind: str) -> None:
        """Remember the first upstream fault; later ones are its consequences."""
        if self.upstream_error is None:
            self.upstream_error = kind

    def fault(self) -> str | None:
        """The upstream fault to report: one noted, else the class of an upstream HTTP error."""
        if self.upstream_error is None and self.upstream_status and self.upstream_status >= 400:
            return "http_5xx" if self.upstream_status >= 500 else "http_4xx"
        return self.upstream_error

    def usage(self, usage: object) -> None:
        """Record token counts from a Responses `usage` object when there is one."""
        if isinstance(usage, dict):
            self.input_tokens = usage.get("input_tokens")
            self.output_tokens = usage.get("output_tokens")


# The record of the request being handled, for code that is not handed it (the upstream client).
CURRENT_RECORD: ContextVar[RequestLog | None] = ContextVar("diglot_request", default=None)


class RequestLine(msgspec.Struct, omit_defaults=True):
    """One request's log line: what is known of it, empty fields left out, in structlog's
    order (fields, event, level, timestamp); encoded as it is, without a dict in between.

    Every field defaults to None only so that it is left out when empty, and so that the line
    can be made positionally: keyword arguments cost several times more per request.
    """

    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    transport: Transport | None = None  # only when not "http"
    direction: Direction | None = None
    model: str | None = None
    stream: bool | None = None
    status: int | None = None
    upstream_status: int | None = None
    duration_ms: float | None = None
    ttfb_ms: float | None = None
    upstream_ms: float | None = None
    upstream_total_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    dropped: tuple[str, ...] | None = None
    upstream_error: str | None = None
    upstream_retries: int | None = None
    error: str | None = None
    event: str | None = None  # always given ("request", "info")
    level: str | None = None
    timestamp: datetime.datetime | None = None  # stamped as the line is written

    def fields(self) -> dict[str, Any]:
        """The line's own fields, for a logger that adds event, level and timestamp itself."""
        return {
            field: value
            for field in self.__struct_fields__[:-3]
            if (value := getattr(self, field)) is not None
        }


def request_line(
    method: str, path: str, record: RequestLog, status: int, ended: float
) -> RequestLine:
    """The request's log line, from its record (in RequestLine's order)."""
    started, first_byte, upstream_ms = record.started, record.first_byte, record.upstream_ms
    return RequestLine(
        record.request_id,
        method,
        path,
        None if record.transport == "http" else record.transport,
        record.direction,
        record.model,
        record.stream,
        status,
        record.upstream_status,
        _ms(ended - started),  # duration_ms
        None if first_byte is None else _ms(first_byte - started),  # ttfb_ms
        None if upstream_ms is None else _hundredths(upstream_ms),
        _upstream_total_ms(record, ended),
        record.input_tokens,
        record.output_tokens,
        record.dropped or None,
        record.fault(),  # upstream_error
        record.upstream_retries or None,
        record.error,
        "request",  # event
        "info",  # level
    )


def _ms(seconds: float) -> float:
    return _hundredths(seconds * 1000)


def _hundredths(value: float) -> float:
    """`value` to two decimals, rounding halves up: what `round(value, 2)` gives, at a fraction
    of its cost (it formats and parses the number)."""
    return int(value * 100 + 0.5) / 100


def _upstream_total_ms(record: RequestLog, ended: float) -> float | None:
    """From the upstream request to the end of its answer (or of diglot's wait for it)."""
    if record.upstream_started is None:
        return None
    return _ms((record.upstream_ended or ended) - record.upstream_started)
