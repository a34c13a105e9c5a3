"""The benchmark's fake upstream, bare relay, wrk script and report work (no timing is asserted).

And bench measures what a user gets: diglot on its default command line, with its state in the
run's scratch folder, against a relay on uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from bench.plan import Scenario, Target, request_body
from bench.processes import Processes, diglot_argv
from bench.relay import make_app
from bench.report import Window, summarise, unloaded_table, verdicts
from bench.run import header, parse_args, probe, run_wrk, start_stack
from bench.sockets import measure_sockets
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


def test_latency_verdicts_judge_added_p50_and_p99_of_the_default_configuration_only() -> None:
    scenario = Scenario("non-stream", False, "burst", 32, True)
    direct = Target("direct (chat)", "direct", "chat", "chat", 1, 1)
    relay = Target("relay (responses)", "relay", "responses", "responses", 2, 2)
    diglot = Target("diglot translating responses->chat", "translating", "responses", "chat", 3, 3)
    extra = Target(
        "diglot translating (extra)", "translating", "responses", "chat", 4, 4, extra=True
    )
    targets = [direct, relay, diglot, extra]
    loaded = {
        relay.name: summarise([_window(1000, 0.1)]),
        diglot.name: summarise([_window(1000, 0.14)]),
        extra.name: summarise([_window(1000, 0.5)]),
    }
    quiet = {
        direct.name: summarise([Window(9000, 1.0, 0.03, 0.1, 0.1, 0.1, 0.0, 0)]),
        diglot.name: summarise([Window(2000, 1.0, 0.5, 3.5, 0.1, 0.1, 0.0, 0)]),
        extra.name: summarise([Window(200, 1.0, 5.0, 9.0, 0.1, 0.1, 0.0, 0)]),
    }
    lines = verdicts([scenario], {scenario.name: targets}, {scenario.name: loaded},
                     {scenario.name: quiet})  # fmt: skip
    assert lines[2:] == [
        "PASS  diglot translating responses->chat, non-stream: CPU/request 1.40x relay "
        "(rounds 1.40-1.40; limit 1.5x)",
        "PASS  diglot translating responses->chat, non-stream: c=1 added p50 0.470 ms "
        "(limit 1.0 ms)",
        "FAIL  diglot translating responses->chat, non-stream: c=1 added p99 3.400 ms "
        "(limit 3.0 ms)",
    ]
    table = unloaded_table([scenario], targets, {scenario.name: quiet})
    assert table[-4].split() == ["direct", "(chat)", "0.030", "0.100", "-", "-"]
    assert table[-3].split() == ["relay", "(responses)", "-", "-", "-", "-"]
    assert table[-2].split()[-4:] == ["0.500", "3.500", "+0.470", "+3.400"]
    assert table[-1].split()[-4:] == ["5.000", "9.000", "+4.970", "+8.900"]


def test_diglot_command_line_is_the_default_one() -> None:
    assert diglot_argv("http://127.0.0.1:9/v1", "chat", 8080) == [
        sys.executable, "-m", "diglot", "--upstream", "http://127.0.0.1:9/v1",
        "--upstream-api", "chat", "--host", "127.0.0.1", "--port", "8080",
    ]  # fmt: skip


def _proc_strings(pid: int, what: str) -> list[str]:
    return Path(f"/proc/{pid}/{what}").read_bytes().decode().split("\0")[:-1]


def test_the_stack_runs_diglot_on_its_defaults_with_state_in_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, systemd, scratch = tmp_path / "home", tmp_path / "systemd", tmp_path / "scratch"
    for folder in (home, systemd, scratch):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(systemd))
    monkeypatch.setenv("DIGLOT_STORE", "memory://")
    monkeypatch.setenv("DIGLOT_LOG_LEVEL", "warning")
    procs = Processes(scratch)
    try:
        stack = start_stack(procs, parse_args(["--quick", "--no-extra", "--no-pin"]), "burst")
        assert stack.relay_loop == "uvloop.Loop"
        upstream = next(t.port for t in stack.targets if t.kind == "direct")
        diglots = {t.pid: t for t in stack.targets if t.kind == "translating"}
        assert len(diglots) == 2
        assert all(not t.extra for t in stack.targets)
        homes = {}
        for pid, target in diglots.items():
            argv = diglot_argv(f"http://127.0.0.1:{upstream}/v1", target.upstream_api, target.port)
            assert _proc_strings(pid, "cmdline") == argv
            env = dict(item.split("=", 1) for item in _proc_strings(pid, "environ"))
            assert not [key for key in env if key.startswith("DIGLOT_")]
            assert "STATE_DIRECTORY" not in env
            homes[target.upstream_api] = Path(env["XDG_STATE_HOME"])
            assert homes[target.upstream_api].is_relative_to(scratch)
        translating = diglots[next(p for p, t in diglots.items() if t.upstream_api == "chat")]
        body = orjson.dumps(request_body("responses", False))
        assert probe(translating, body, False) is None
        sockets = measure_sockets(translating, rounds=2, seconds=0.2, connections=2)
    finally:
        procs.stop_all()
    assert len(sockets.sse_ms) == len(sockets.socket_ms) == 2
    assert all(ms > 0 for ms in sockets.sse_ms + sockets.socket_ms)
    assert (homes["chat"] / "diglot" / "responses.db").is_file()  # the default store, SQLite
    requests = procs.logged_events("diglot-chat", "request")
    assert [(r["level"], r["path"], r["status"]) for r in requests[:1]] == [
        ("info", "/v1/responses", 200)
    ]
    turns = {(r.get("method"), r.get("transport"), r["status"]) for r in requests[1:]}
    assert turns == {("POST", None, 200), ("WS", "websocket", 200)}
    assert list(home.iterdir()) == list(systemd.iterdir()) == []


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_header_names_the_machine_versions_date_and_command() -> None:
    settings = parse_args(["--quick", "--no-pin"])
    lines = header(settings, 2, "normal")
    assert re.fullmatch(r"diglot benchmark, \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[0])
    assert lines[1].endswith(f"Linux {platform.release()}")
    assert "CPUs (2 usable)" in lines[1]
    for part in (
        f"Python {platform.python_version()}",
        f"aiohttp {aiohttp.__version__}",
        f"uvloop {importlib.metadata.version('uvloop')}",
        "wrk ",
    ):
        assert part in lines[2]
    assert lines[3] == (
        "diglot (its default configuration, judged): python -m diglot --upstream "
        "http://127.0.0.1:<upstream port>/v1 --upstream-api <chat|responses> --host 127.0.0.1 "
        "--port <port>"
    )
    assert lines[5] == (
        "extra rows, not judged (memory store, warning logs): the same plus --store memory:// "
        "--log-level warning"
    )
