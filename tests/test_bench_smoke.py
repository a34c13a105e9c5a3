"""The benchmark's fake upstream, bare relay and wrk script work (no timing is asserted)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from bench.plan import Scenario, Target, request_body
from bench.relay import make_app
from bench.report import Window, summarise, verdicts
from bench.run import probe, run_wrk
from bench.upstream import STREAM_EVENTS, serve, text_deltas
from tests.validate import (
    assert_valid_chat_chunk,
    assert_valid_chat_completion,
    assert_valid_response,
    assert_valid_stream,
)

CHAT_TEXT = "".join(text_deltas(STREAM_EVENTS - 3))
RESPONSES_TEXT = "".join(text_deltas(STREAM_EVENTS - 8))


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    server = await serve("127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def relay(aiohttp_client: Any, upstream_port: int) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        make_app(f"http://127.0.0.1:{upstream_port}")
    )
    return client


def sse_data(payload: bytes) -> list[bytes]:
    return [line[6:] for line in payload.split(b"\n") if line.startswith(b"data: ")]


async def test_relay_passes_a_chat_completion(relay: TestClient[Any, Any]) -> None:
    response = await relay.post("/v1/chat/completions", json=request_body("chat", False))
    assert response.status == 200
    body = orjson.loads(await response.read())
    assert_valid_chat_completion(body)
    assert body["choices"][0]["message"]["content"] == CHAT_TEXT


async def test_relay_passes_a_responses_object(relay: TestClient[Any, Any]) -> None:
    response = await relay.post("/v1/responses", json=request_body("responses", False))
    assert response.status == 200
    body = orjson.loads(await response.read())
    assert_valid_response(body)
    assert body["output"][0]["content"][0]["text"] == RESPONSES_TEXT


async def test_relay_streams_100_chat_chunks(relay: TestClient[Any, Any]) -> None:
    response = await relay.post("/v1/chat/completions", json=request_body("chat", True))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    data = sse_data(await response.read())
    assert len(data) == STREAM_EVENTS + 1
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(item) for item in data[:-1]]
    for chunk in chunks:
        assert_valid_chat_chunk(chunk)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == CHAT_TEXT
    assert chunks[-1]["usage"]["completion_tokens"] == 97


async def test_relay_streams_100_responses_events(relay: TestClient[Any, Any]) -> None:
    response = await relay.post("/v1/responses", json=request_body("responses", True))
    assert response.status == 200
    payload = await response.read()
    events = [orjson.loads(item) for item in sse_data(payload)]
    assert len(events) == STREAM_EVENTS
    assert payload.count(b"event: ") == STREAM_EVENTS
    assert [e["sequence_number"] for e in events] == list(range(STREAM_EVENTS))
    final = assert_valid_stream(events)
    assert final["output"][0]["content"][0]["text"] == RESPONSES_TEXT


async def test_upstream_reads_a_chunked_request_body(relay: TestClient[Any, Any]) -> None:
    async def parts() -> AsyncIterator[bytes]:
        body = orjson.dumps(request_body("chat", False))
        yield body[:10]
        yield body[10:]

    response = await relay.post("/v1/chat/completions", data=parts())
    assert response.status == 200
    assert orjson.loads(await response.read())["object"] == "chat.completion"


async def test_upstream_answers_unknown_routes_with_404(relay: TestClient[Any, Any]) -> None:
    response = await relay.post("/v1/embeddings", json={"model": "m"})
    assert response.status == 404
    assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_probe_accepts_the_upstream_streams(upstream_port: int, tmp_path: Path) -> None:
    for api in ("chat", "responses"):
        target = Target("direct", "direct", api, api, upstream_port, 0)
        for stream in (False, True):
            body = orjson.dumps(request_body(api, stream))
            assert await asyncio.to_thread(probe, target, body, stream) is None


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_wrk_script_posts_the_body(upstream_port: int, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(orjson.dumps(request_body("responses", True)))
    target = Target("direct", "direct", "responses", "responses", upstream_port, 0)
    result = await asyncio.to_thread(run_wrk, target, body, 1, 2, None)
    assert result["requests"] > 0
    assert result["status"] == 0
    assert result["connect"] == result["read"] == result["timeout"] == 0


def _window(requests: int, cpu_s: float) -> Window:
    return Window(requests, 1.0, 1.0, 2.0, cpu_s, 0.0, 0.0, 0)


def test_verdicts_compare_each_round_with_the_relay() -> None:
    scenario = Scenario("non-stream", False, "burst", 32, True)
    relay = Target("relay (responses)", "relay", "responses", "responses", 1, 1)
    diglot = Target("diglot translating responses->chat", "translating", "responses", "chat", 2, 2)
    skipped = Target("diglot translating chat->responses", "translating", "chat", "responses", 2, 2)
    skipped.skip[scenario.name] = "answered 400: not yet"
    loaded = {
        scenario.name: {
            relay.name: summarise([_window(1000, 0.1), _window(1000, 0.2)]),
            diglot.name: summarise([_window(1000, 0.14), _window(1000, 0.4)]),
        }
    }
    lines = verdicts(
        [scenario], {scenario.name: [relay, diglot, skipped]}, loaded, {"non-stream": {}}
    )
    assert lines[2:] == [
        "FAIL  diglot translating responses->chat, non-stream: CPU/request 1.70x relay "
        "(rounds 1.40-2.00; limit 1.5x)",
        "SKIP  diglot translating chat->responses, non-stream: answered 400: not yet",
    ]
