"""The per-request JSON line is written directly, exactly as structlog would have written it."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import orjson
import pytest
import structlog

from diglot.proxy.observability import (
    FLUSH_AFTER,
    configure_logging,
    flush_request_lines,
    get_logger,
    request_line_writer,
)

FIELDS = {"request_id": "req_1", "status": 200, "duration_ms": 1.5, "dropped": ("top_k",)}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.BytesIO]:
    """stderr as bytes, with logging configured onto it as JSON and put back afterwards."""
    raw = io.BytesIO()
    buffered = io.BufferedWriter(raw)  # as sys.stderr.buffer is
    monkeypatch.setattr(sys, "stderr", SimpleNamespace(buffer=buffered, isatty=lambda: False))
    configure_logging("json", "info")
    yield raw
    configure_logging("console", "info")  # and so no JSON stream for later tests' request lines
    structlog.reset_defaults()


async def test_the_direct_line_is_structlogs_line(stderr: io.BytesIO) -> None:
    get_logger().info("request", **FIELDS)
    request_line_writer()(dict(FIELDS))
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
    request_line_writer()({"input_tokens": 2**70})
    flush_request_lines()
    assert stderr.getvalue().startswith(b'{"input_tokens":1180591620717411303424,"event":')


async def test_request_lines_are_written_together_and_before_any_later_line(
    stderr: io.BytesIO,
) -> None:
    write = request_line_writer()
    write({"request_id": "req_1"})
    write({"request_id": "req_2"})
    assert stderr.getvalue() == b""  # still in the buffer, for one write call
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
