"""GET /metrics: exact samples after known requests, and the per-request log line's fields."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from diglot.proxy.app import create_app
from diglot.proxy.config import Config
from diglot.proxy.metrics import Metrics
from diglot.proxy.observability import RequestLog
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Hang,
    Reply,
    StreamReply,
    completion,
    text_chunks,
)

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

RESPONSES_BODY = {"model": "fake-model", "input": "hi"}
RESPONSES_STREAM = {"model": "fake-model", "input": "hi", "stream": True}
CHAT_BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
TIMINGS = (
    "diglot_request_duration_seconds",
    "diglot_upstream_duration_seconds",
    "diglot_overhead_seconds",
    "diglot_time_to_first_byte_seconds",
    "diglot_upstream_time_to_first_byte_seconds",
    "diglot_overhead_time_to_first_byte_seconds",
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient[Any, Any]) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def diglot(samples: Samples, prefix: str = "diglot_") -> dict[str, float]:
    """diglot's own non-zero samples as `name{k=v,...}` strings, for exact comparison."""
    out = {}
    for (name, labels), value in samples.items():
        if name.startswith(prefix) and not name.endswith("_created") and value:
            rendered = ",".join(f"{k}={v}" for k, v in sorted(labels))
            out[f"{name}{{{rendered}}}"] = value
    return out


def counts(samples: Samples, direction: str, stream: str) -> dict[str, float]:
    labels = frozenset({("direction", direction), ("stream", stream)})
    return {name: samples.get((name + "_count", labels), 0.0) for name in TIMINGS}


def total(samples: Samples, name: str, direction: str, stream: str) -> float:
    return samples[(name + "_sum", frozenset({("direction", direction), ("stream", stream)}))]


async def test_a_translated_answer_is_counted_once_with_its_time_split(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("hello")))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json={**RESPONSES_BODY, "max_tool_calls": 2})
    assert resp.status == 200
    samples = await scrape(client)
    got = {
        key: value
        for key, value in diglot(samples).items()
        if not key.startswith(("diglot_request_duration", "diglot_upstream_duration"))
        and not key.startswith(("diglot_overhead", "diglot_time_to", "diglot_upstream_time"))
    }
    assert got == {
        (
            "diglot_requests_total{direction=responses->chat,route=/v1/responses"
            ",status=200,transport=http}"
        ): 1.0,
        "diglot_translation_warnings_total{direction=responses->chat,param=max_tool_calls}": 1.0,
    }
    assert counts(samples, "responses->chat", "false") == dict.fromkeys(TIMINGS, 1.0)
    whole = total(samples, "diglot_request_duration_seconds", "responses->chat", "false")
    upstream = total(samples, "diglot_upstream_duration_seconds", "responses->chat", "false")
    overhead = total(samples, "diglot_overhead_seconds", "responses->chat", "false")
    assert 0 < upstream <= whole
    assert upstream + overhead == pytest.approx(whole)


async def test_a_stream_is_active_while_open_and_counted_when_done(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(StreamReply(text_chunks("a", "b"), hold=release, hold_after=2))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=RESPONSES_STREAM)
    assert await asyncio.wait_for(resp.content.readany(), 5)
    during = await scrape(client)
    assert during[("diglot_active_streams", frozenset({("direction", "responses->chat")}))] == 1
    release.set()
    await resp.read()
    after = await scrape(client)
    assert after[("diglot_active_streams", frozenset({("direction", "responses->chat")}))] == 0
    assert counts(after, "responses->chat", "true") == dict.fromkeys(TIMINGS, 1.0)
    assert diglot(after, "diglot_requests") == {
        "diglot_requests_total{direction=local,route=/metrics,status=200,transport=http}": 1.0,
        (
            "diglot_requests_total{direction=responses->chat,route=/v1/responses"
            ",status=200,transport=http}"
        ): 1.0,
    }


async def test_passthrough_errors_and_unknown_routes_are_labelled(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(completion("ok")),
        Reply({"error": {"message": "slow down"}}, status=429),
        Reply({"error": {"message": "down"}}, status=503),
    )
    client = await make_proxy("chat")
    for _ in range(3):
        await client.post("/chat/completions", json=CHAT_BODY)
    assert (await client.get("/nowhere")).status == 404
    samples = await scrape(client)
    assert diglot(samples, "diglot_requests") == {
        (
            "diglot_requests_total{direction=passthrough,route=/chat/completions"
            ",status=200,transport=http}"
        ): 1.0,
        (
            "diglot_requests_total{direction=passthrough,route=/chat/completions"
            ",status=429,transport=http}"
        ): 1.0,
        (
            "diglot_requests_total{direction=passthrough,route=/chat/completions"
            ",status=503,transport=http}"
        ): 1.0,
        "diglot_requests_total{direction=local,route=unmatched,status=404,transport=http}": 1.0,
    }
    assert diglot(samples, "diglot_upstream_errors") == {
        "diglot_upstream_errors_total{direction=passthrough,kind=http_4xx}": 1.0,
        "diglot_upstream_errors_total{direction=passthrough,kind=http_5xx}": 1.0,
    }
    assert counts(samples, "passthrough", "false") == dict.fromkeys(TIMINGS, 3.0)


async def test_an_unreachable_upstream_is_retried_once_and_counted(
    aiohttp_client: Any, free_port: int
) -> None:
    config = Config(upstream=f"http://127.0.0.1:{free_port}/v1", upstream_api="chat")
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    assert (await client.post("/v1/responses", json=RESPONSES_BODY)).status == 502
    samples = await scrape(client)
    assert diglot(samples, "diglot_upstream") == {
        "diglot_upstream_errors_total{direction=responses->chat,kind=refused}": 1.0,
        "diglot_upstream_retries_total{direction=responses->chat}": 1.0,
    }
    # No answer came, so no upstream time was measured: only the whole request's.
    assert counts(samples, "responses->chat", "false") == {
        **dict.fromkeys(TIMINGS, 0.0),
        "diglot_request_duration_seconds": 1.0,
        "diglot_time_to_first_byte_seconds": 1.0,
    }


async def test_a_client_that_goes_away_is_a_499_and_closes_its_stream(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("a", "b"), hold=asyncio.Event(), hold_after=2))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=RESPONSES_STREAM)
    assert await asyncio.wait_for(resp.content.readany(), 5)
    resp.close()
    # diglot's handler unwinds (and is counted) before its upstream connection can close.
    await asyncio.wait_for(fake.cancelled.wait(), 5)
    samples = await scrape(client)
    key = (
        "diglot_requests_total{direction=responses->chat,route=/v1/responses"
        ",status=499,transport=http}"
    )
    assert diglot(samples, "diglot_requests")[key] == 1.0
    assert samples[("diglot_active_streams", frozenset({("direction", "responses->chat")}))] == 0


async def test_upstream_timeout_is_counted_as_a_timeout(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Hang())
    client = await make_proxy("chat", read_timeout=0.1)
    assert (await client.post("/v1/chat/completions", json=CHAT_BODY)).status == 504
    samples = await scrape(client)
    assert diglot(samples, "diglot_upstream") == {
        "diglot_upstream_errors_total{direction=passthrough,kind=timeout}": 1.0,
    }


def test_requests_noted_past_a_batch_are_all_counted_at_the_scrape() -> None:
    metrics = Metrics()
    for number in range(300):  # more than one batch, and a part batch still noted
        record = RequestLog(
            request_id=f"req_{number}",
            direction="responses->chat",
            stream=False,
            started=10.0,
            upstream_started=10.001,
            upstream_answered=10.002,
            upstream_ended=10.003,
        )
        metrics.finished("/v1/responses", record, 200, 10.004)
    labels = {
        "route": "/v1/responses",
        "direction": "responses->chat",
        "status": "200",
        "transport": "http",
    }
    timing = {"direction": "responses->chat", "stream": "false"}
    registry = metrics.registry
    assert registry.get_sample_value("diglot_requests_total", labels) == 300
    for name in TIMINGS:
        assert registry.get_sample_value(f"{name}_count", timing) == 300, name
    assert (
        registry.get_sample_value("diglot_overhead_seconds_bucket", {**timing, "le": "0.0025"})
        == 300
    )


def test_process_metrics_are_exported() -> None:
    assert Metrics().registry.get_sample_value("process_resident_memory_bytes") is not None


async def test_the_request_line_carries_durations_faults_and_dropped_fields(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hi")[:2], done=False))
    client = await make_proxy("chat")
    with capture_logs() as logs:
        resp = await client.post(
            "/v1/responses",
            json={**RESPONSES_STREAM, "max_tool_calls": 1},
            headers={"X-Request-Id": "line-1", "Authorization": "Bearer sk-secret"},
        )
        await resp.read()
    [line] = [entry for entry in logs if entry["event"] == "request"]
    timings = {key: line.pop(key) for key in list(line) if key.endswith("_ms")}
    assert set(timings) == {"duration_ms", "ttfb_ms", "upstream_ms", "upstream_total_ms"}
    assert all(isinstance(value, float) and value >= 0 for value in timings.values())
    assert timings["ttfb_ms"] <= timings["duration_ms"]
    assert line == {
        "event": "request",
        "log_level": "info",
        "request_id": "line-1",
        "method": "POST",
        "path": "/v1/responses",
        "direction": "responses->chat",
        "model": "fake-model",
        "stream": True,
        "status": 200,
        "upstream_status": 200,
        "dropped": ("max_tool_calls",),
        "upstream_error": "broken_stream",
        "error": "The upstream stream ended before the answer finished.",
    }
    assert "sk-secret" not in repr(logs)
