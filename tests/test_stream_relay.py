"""The relay between upstream bytes and a stream translator: what it blames on the upstream."""

from __future__ import annotations

from typing import Any

import pytest

from diglot.proxy.observability import RequestLog
from diglot.proxy.pump import TranslatingRelay
from diglot.translators.stream.lifecycle import StreamClosed, StreamPhase


class Translator:
    """Raises `error` on every event; fails as the relay tells it to."""

    def __init__(self, error: Exception) -> None:
        self.phase = StreamPhase.OPEN
        self.error = error

    def feed(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        raise self.error

    def finish(self) -> list[dict[str, Any]]:
        return self.fail("ended")

    def fail(self, message: str, code: str | None = None) -> list[dict[str, Any]]:
        self.phase = StreamPhase.FAILED
        return [{"failed": message, "code": code}]


class Relay(TranslatingRelay[Translator]):
    what = "event"
    shape = "an event"

    def _shaped(self, payload: dict[str, Any]) -> bool:
        return True

    def _ended(self, fault: str) -> None:
        self.record.upstream_fault(fault)


def test_an_event_the_translator_cannot_read_is_the_upstreams_fault() -> None:
    record = RequestLog(request_id="req_1")
    relay = Relay(record, Translator(KeyError("delta")))
    assert relay.data(b'data: {"type": "x"}\n\n') == [
        {"failed": "The upstream sent a stream event diglot cannot read.", "code": "server_error"}
    ]
    assert relay.closed
    assert record.upstream_error == "bad_response"


def test_a_translator_fed_after_its_end_is_diglots_bug_not_an_upstream_fault() -> None:
    record = RequestLog(request_id="req_1")
    relay = Relay(record, Translator(StreamClosed("over")))
    with pytest.raises(StreamClosed):
        relay.data(b'data: {"type": "x"}\n\n')
    assert record.upstream_error is None
    assert not relay.closed
