"""The benchmark's replicas phase: its diglot routes over two replicas, and its verdicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bench.plan import Target, request_body
from bench.processes import Processes
from bench.replicas import Pair, measure_pairs, replicas_report, routed_targets, start_routed
from bench.report import Window
from bench.run import probe
from bench.upstream import serve


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    server = await serve("127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])


async def test_the_routing_diglot_answers_both_directions_from_two_replicas(
    upstream_port: int, tmp_path: Path
) -> None:
    procs = Processes(tmp_path)
    try:
        port, pid = await asyncio.to_thread(start_routed, procs, upstream_port, (None, None))
        baseline = [
            Target("diglot passthrough chat->chat", "passthrough", "chat", "chat", 1, 1),
            Target("diglot translating responses->chat", "translating", "responses", "chat", 1, 1),
        ]
        routed = routed_targets(baseline, port, pid)
        for target in routed:
            body = orjson.dumps(request_body(target.client_api, False))
            assert await asyncio.to_thread(probe, target, body, False) is None
    finally:
        procs.stop_all()
    assert [t.name for t in routed] == [
        "diglot passthrough chat->chat (2 replicas)",
        "diglot translating responses->chat (2 replicas)",
    ]
    config = (tmp_path / "state" / "diglot-replicas" / "diglot.toml").read_text()
    assert config.count("http://127.0.0.1:") == 2
    served = procs.logged_events("diglot-replicas", "request")
    assert [(r["path"], r["status"]) for r in served] == [
        ("/v1/chat/completions", 200),
        ("/v1/responses", 200),
    ]


def test_the_verdict_compares_each_round_with_one_upstream() -> None:
    pairs = [
        Pair("diglot passthrough chat->chat", (0.2, 0.2, 0.2), (0.21, 0.19, 0.2)),
        Pair("diglot translating responses->chat", (0.4, 0.4, 0.4), (0.48, 0.5, 0.4)),
    ]
    lines = replicas_report(pairs)
    assert lines[-2:] == [
        "PASS  diglot passthrough chat->chat, routed over 2 replicas: CPU/request 1.00x one "
        "upstream (limit 1.10x)",
        "FAIL  diglot translating responses->chat, routed over 2 replicas: CPU/request 1.20x "
        "one upstream (limit 1.10x)",
    ]


def test_both_twins_are_warmed_up_then_measured_in_alternating_order(tmp_path: Path) -> None:
    one = Target("diglot passthrough chat->chat", "passthrough", "chat", "chat", 1, 11)
    twin = Target(
        "diglot passthrough chat->chat (2 replicas)", "passthrough", "chat", "chat", 2, 12
    )
    runs: list[str] = []
    cpu = {one.name: 0.2, twin.name: 0.3}

    def run(target: Target, body: Path) -> Window:
        runs.append(target.name)
        return Window(1000, 1.0, 1.0, 2.0, cpu[target.name], 0.0, 0.0, 0)

    pairs = measure_pairs([one], [twin], {"chat": tmp_path / "chat.json"}, 2, run)
    assert runs == [one.name, twin.name, one.name, twin.name, twin.name, one.name]
    assert pairs == [Pair(one.name, (0.2, 0.2), (0.3, 0.3))]
