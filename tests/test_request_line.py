"""The per-request JSON line is written directly, exactly as structlog would have written it."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import structlog

from diglot.proxy.observability import (
    FLUSH_AFTER,
    RequestLog,
    configure_logging,
    flush_request_lines,
    get_logger,
    request_line,
    request_line_writer,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

FIELDS = {
    "request_id": "req_1",
    "method": "POST",
    "path": "/v1/responses",
    "direction": "responses->chat",
    "status": 200,
    "duration_ms": 1.5,
    "dropped": ("top_k",),
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")  # no fraction at .000000


class _Raw(io.RawIOBase):
    """An unbuffered byte stream, as sys.stderr.buffer is under PYTHONUNBUFFERED."""

    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        return self.sink.write(data)


@pytest.fixture(params=["buffered", "unbuffered"])
def stderr(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.BytesIO]:
    """stderr as bytes, with logging configured onto it as JSON and put back afterwards; its
    `buffer` buffered as usual, or raw as PYTHONUNBUFFERED makes it."""
    raw = io.BytesIO()
    buffer = io.BufferedWriter(raw) if request.param == "buffered" else _Raw(raw)
    monkeypatch.setattr(sys, "stderr", SimpleNamespace(buffer=buffer, isatty=lambda: False))
    configure_logging("json", "info")
    yield raw
    configure_logging("console", "info")  # and so no JSON stream for later tests' request lines
    structlog.reset_defaults()


def _ending(**fields: Any) -> tuple[str, str, RequestLog, int, float]:
    """A request's end, as the frame hands it to the writer, for a line of FIELDS and `fields`."""
    record = RequestLog(
        request_id=fields.get("request_id", "req_1"),
        direction="responses->chat",
        started=10.0,
        dropped=("top_k",),
        input_tokens=fields.get("input_tokens"),
    )
    return "POST", "/v1/responses", record, 200, 10.0015


def test_the_lines_fields_are_its_known_ones_in_order() -> None:
    record = RequestLog(request_id="req_1", started=10.0, direction="passthrough", model="m")
    record.upstream_started, record.upstream_status = 10.25, 429
    line = request_line("POST", "/v1/chat/completions", record, 429, 11.0)
    assert line.fields() == {
        "request_id": "req_1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "direction": "passthrough",
        "model": "m",
        "status": 429,
        "upstream_status": 429,
        "duration_ms": 1000.0,
        "upstream_total_ms": 750.0,
        "upstream_error": "http_4xx",
    }


async def test_the_direct_line_is_structlogs_line(stderr: io.BytesIO) -> None:
    get_logger().info("request", **FIELDS)
    request_line_writer()(*_ending())
    flush_request_lines()
    by_structlog, direct = (orjson.loads(line) for line in stderr.getvalue().splitlines())
    assert list(direct) == list(by_structlog)
    assert TIMESTAMP.fullmatch(direct.pop("timestamp"))
    assert TIMESTAMP.fullmatch(by_structlog.pop("timestamp"))
    assert (
        direct
        == by_structlog
        == {
            **FIELDS,
            "dropped": ["top_k"],
            "event": "request",
            "level": "info",
        }
    )


async def test_integers_beyond_64_bits_are_written_too(stderr: io.BytesIO) -> None:
    request_line_writer()(*_ending(input_tokens=2**70))
    flush_request_lines()
    assert b'"input_tokens":1180591620717411303424,' in stderr.getvalue()


async def test_request_lines_are_written_together_and_before_any_later_line(
    stderr: io.BytesIO,
) -> None:
    write = request_line_writer()
    write(*_ending(request_id="req_1"))
    write(*_ending(request_id="req_2"))
    assert stderr.getvalue() == b""  # still waiting, for one write call
    (flush,) = [
        handle
        for handle in asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        if handle._callback is flush_request_lines
    ]
    assert flush.when() - asyncio.get_running_loop().time() <= FLUSH_AFTER
    get_logger().warning("store_unavailable")
    lines = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line.get("request_id", line["event"]) for line in lines] == [
        "req_1",
        "req_2",
        "store_unavailable",
    ]


async def test_a_line_shows_the_request_as_it_ended(stderr: io.BytesIO) -> None:
    ending = _ending()
    request_line_writer()(*ending)
    ending[2].model, ending[2].error = "later", "later"
    flush_request_lines()
    (line,) = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert "model" not in line
    assert "error" not in line


async def test_a_line_logged_on_another_thread_comes_after_the_request_lines_waiting(
    stderr: io.BytesIO,
) -> None:
    request_line_writer()(*_ending(request_id="req_1"))
    thread = threading.Thread(target=get_logger().warning, args=("store_checkpoint_failed",))
    thread.start()
    thread.join()
    lines = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert [line.get("request_id", line["event"]) for line in lines] == [
        "req_1",
        "store_checkpoint_failed",
    ]
