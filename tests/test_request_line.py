"""The per-request JSON line is written directly, exactly as structlog would have written it."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import orjson
import pytest
import structlog

from diglot.proxy.observability import configure_logging, get_logger, request_line_writer

FIELDS = {"request_id": "req_1", "status": 200, "duration_ms": 1.5, "dropped": ("top_k",)}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.BytesIO]:
    """stderr as bytes, with logging configured onto it as JSON and put back afterwards."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", SimpleNamespace(buffer=raw, isatty=lambda: False))
    configure_logging("json", "info")
    yield raw
    configure_logging("console", "info")  # and so no JSON stream for later tests' request lines
    structlog.reset_defaults()


def test_the_direct_line_is_structlogs_line(stderr: io.BytesIO) -> None:
    get_logger().info("request", **FIELDS)
    request_line_writer()(dict(FIELDS))
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


def test_integers_beyond_64_bits_are_written_too(stderr: io.BytesIO) -> None:
    request_line_writer()({"input_tokens": 2**70})
    assert stderr.getvalue().startswith(b'{"input_tokens":1180591620717411303424,"event":')
