"""Replicas of one upstream: sessions keep their replica and split evenly, requests without a
session go to the least busy one, a replica that goes away is left out until it comes back,
and a request that reached a replica is never sent to another."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from diglot.proxy.app import create_app
from diglot.proxy.routing import Pool
from diglot.proxy.state import PROXY
from fixtures.fake_chat_upstream import FakeUpstream, Received, Reply, Script, StreamReply, chunk
from tests.test_faults import RawUpstream, read_request, reset
from tests.test_routing import chat_answer, events_of, upstreams_config

Client = TestClient[web.Request, web.Application]
SESSIONS, TURNS = 20, 5
PROBED = (0.01, 0.02)  # a replica out of rotation is probed this soon (tests only)


class Replicas:
    """diglot in front of one chat upstream with two fake replicas, A and B."""

    def __init__(self, client: Client, fakes: list[FakeUpstream], servers: list[TestServer]):
        self.client = client
        self.fakes = fakes
        self.servers = servers
        self.pool: Pool = client.app[PROXY].router.pools[0]
        for replica in self.pool.replicas:
            replica.backoff = PROBED

    def replica_of(self, text: str) -> int:
        """Which replica got the request whose last message is `text` (exactly once)."""
        found = [
            number
            for number, fake in enumerate(self.fakes)
            for received in fake.received
            if received.json()["messages"][-1]["content"] == text
        ]
        assert len(found) == 1, (text, found)
        return found[0]


@pytest.fixture
async def replicas(aiohttp_server: Any, aiohttp_client: Any) -> Replicas:
    fakes = [FakeUpstream(chat_answer("from A")), FakeUpstream(chat_answer("from B"))]
    servers = [await aiohttp_server(fake.app()) for fake in fakes]
    config = upstreams_config(
        {
            "name": "qwen",
            "urls": [str(server.make_url("/v1")) for server in servers],
            "api": "chat",
            "models": ["*"],
        }
    )
    client: Client = await aiohttp_client(await aiohttp_server(create_app(config)))
    return Replicas(client, fakes, servers)


Turn = Callable[[Client, int, int, dict[int, str]], Awaitable[int]]


async def keyed_turn(client: Client, session: int, turn: int, _: dict[int, str]) -> int:
    """A Responses turn naming its session with prompt_cache_key (as Codex does)."""
    body = {"model": "m", "input": f"s{session} t{turn}", "prompt_cache_key": f"key-{session}"}
    resp = await client.post("/v1/responses", json=body)
    return resp.status


async def chained_turn(client: Client, session: int, turn: int, last: dict[int, str]) -> int:
    """A Responses turn continuing the session's previous response, nothing else said."""
    body: dict[str, Any] = {"model": "m", "input": f"s{session} t{turn}"}
    if session in last:
        body["previous_response_id"] = last[session]
    resp = await client.post("/v1/responses", json=body)
    last[session] = (await resp.json())["id"]
    return resp.status


async def header_turn(client: Client, session: int, turn: int, _: dict[int, str]) -> int:
    """A Chat turn (passed through) with the client's session_id header."""
    body = {"model": "m", "messages": [{"role": "user", "content": f"s{session} t{turn}"}]}
    resp = await client.post(
        "/v1/chat/completions", json=body, headers={"session_id": f"{session}"}
    )
    return resp.status


async def run_turns(replicas: Replicas, turn: Turn, turns: range, last: dict[int, str]) -> None:
    """Each turn of every session side by side (a chain's first turns one after the other)."""
    for number in turns:
        calls = [turn(replicas.client, session, number, last) for session in range(SESSIONS)]
        if turn is chained_turn and number == 0:
            statuses = [await call for call in calls]
        else:
            statuses = list(await asyncio.gather(*calls))
        assert statuses == [200] * SESSIONS


def sessions_by_replica(replicas: Replicas, turns: range) -> dict[int, list[int]]:
    """Which replica served each session, asserting it served every one of its turns."""
    placed: dict[int, list[int]] = {0: [], 1: []}
    for session in range(SESSIONS):
        used = {replicas.replica_of(f"s{session} t{number}") for number in turns}
        assert len(used) == 1, f"session {session} went to replicas {used}"
        placed[used.pop()].append(session)
    return placed


@pytest.mark.parametrize("turn", [keyed_turn, chained_turn, header_turn])
async def test_every_turn_of_a_session_lands_on_one_replica_split_within_60_40(
    replicas: Replicas, turn: Turn
) -> None:
    await run_turns(replicas, turn, range(TURNS), {})
    placed = sessions_by_replica(replicas, range(TURNS))
    assert 8 <= len(placed[0]) <= 12, placed
    samples = await scrape(replicas.client)
    turns = {
        outcome: sum(samples[turns_key(outcome, name)] for name in replica_names(replicas))
        for outcome in ("kept", "moved", "new")
    }
    assert turns == {"kept": SESSIONS * (TURNS - 1), "moved": 0, "new": SESSIONS}
    seated = [samples[key("diglot_replica_sessions", name)] for name in replica_names(replicas)]
    assert seated == [len(placed[0]), len(placed[1])]
    assert samples["diglot_session_affinity_ratio{upstream=qwen}"] == 1.0


def test_the_load_bound_splits_every_batch_of_20_sessions_within_60_40() -> None:
    """Plain consistent hashing splits about a quarter of such batches worse than 60/40."""
    settings = upstreams_config(
        {"name": "q", "urls": ["http://a:1/v1", "http://b:1/v1"], "api": "chat", "models": ["*"]}
    ).upstream_settings()[0]
    splits = []
    for batch in range(200):
        pool = Pool(settings)
        for session in range(SESSIONS):
            pool.pick(f"k:batch {batch} session {session}")
        splits.append(pool.seated[pool.replicas[0]])
        for session in range(SESSIONS):  # later turns: each session where it was seated
            pool.pick(f"k:batch {batch} session {session}")
        assert sum(pool.turns[replica]["kept"] for replica in pool.replicas) == SESSIONS
    assert [split for split in splits if not 8 <= split <= 12] == []


async def test_a_request_without_a_session_goes_to_the_least_busy_replica(
    replicas: Replicas,
) -> None:
    release = asyncio.Event()

    def answer(received: Received) -> Script:
        if received.json().get("stream"):
            return StreamReply([chunk({"content": "held"})], hold=release, hold_after=1)
        return Reply({"error": {"message": "unused"}}, status=500)

    for fake in replicas.fakes:
        fake.responder = answer
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    held = [await replicas.client.post("/v1/chat/completions", json=body) for _ in range(2)]
    assert [len(fake.received) for fake in replicas.fakes] == [1, 1]
    samples = await scrape(replicas.client)
    busy = [samples[key("diglot_replica_in_flight", name)] for name in replica_names(replicas)]
    assert busy == [1, 1]
    release.set()
    for resp in held:
        await resp.read()


async def test_a_killed_replica_costs_no_client_an_error_and_is_used_again_once_back(
    replicas: Replicas, aiohttp_server: Any
) -> None:
    last: dict[int, str] = {}
    await run_turns(replicas, keyed_turn, range(2), last)
    before = sessions_by_replica(replicas, range(2))
    port = replicas.servers[1].port
    await replicas.servers[1].close()
    served_before = [len(fake.received) for fake in replicas.fakes]
    await run_turns(replicas, keyed_turn, range(2, TURNS), last)
    assert len(replicas.fakes[1].received) == served_before[1]  # nothing reached B
    for session in range(SESSIONS):
        assert {replicas.replica_of(f"s{session} t{n}") for n in range(2, TURNS)} == {0}
    b_name = replica_names(replicas)[1]
    samples = await scrape(replicas.client)
    assert samples[f"diglot_replica_up{{replica={b_name},upstream=qwen}}"] == 0
    assert (
        samples[f"diglot_replica_errors_total{{kind=refused,replica={b_name},upstream=qwen}}"] >= 1
    )
    assert samples[turns_key("moved", replica_names(replicas)[0])] == len(before[1])
    ready = await replicas.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["upstreams"] == {
        "qwen": {replica_names(replicas)[0]: "up", b_name: "down"}
    }

    await aiohttp_server(replicas.fakes[1].app(), port=port)
    await asyncio.wait_for(replicas.pool.replicas[1].back(), 5)
    body = {"model": "m", "input": "new session", "prompt_cache_key": "after the return"}
    assert (await replicas.client.post("/v1/responses", json=body)).status == 200
    assert replicas.replica_of("new session") == 1  # A holds every session: B takes new ones
    await keyed_turn(replicas.client, 0, TURNS, last)
    assert replicas.replica_of(f"s0 t{TURNS}") == 0  # an old session stays where it moved


async def test_a_stream_that_reached_a_replica_fails_there_and_is_not_sent_again(
    replicas: Replicas,
) -> None:
    release = asyncio.Event()
    for fake in replicas.fakes:
        fake.script(
            StreamReply(
                [chunk({"role": "assistant", "content": "he"})],
                hold=release,
                hold_after=1,
                then="drop",
            )
        )
    body = {"model": "m", "input": "cut short", "stream": True, "prompt_cache_key": "one"}
    resp = await replicas.client.post("/v1/responses", json=body)
    release.set()
    events = events_of(await resp.read())
    assert events[-1]["type"] == "response.failed"
    assert sum(len(fake.received) for fake in replicas.fakes) == 1


async def test_a_request_that_reached_a_replica_that_then_broke_is_a_502_not_a_retry(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    broken, working = RawUpstream(drop), FakeUpstream(chat_answer("fine"))
    await broken.start()
    server = await aiohttp_server(working.app())
    config = upstreams_config(
        {
            "name": "q",
            "urls": [broken.url, str(server.make_url("/v1"))],
            "api": "chat",
            "models": ["*"],
        }
    )
    client: Client = await aiohttp_client(await aiohttp_server(create_app(config)))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        for _ in range(4):  # until one of them reaches the broken replica
            answered_before = len(working.received)
            resp = await client.post("/v1/chat/completions", json=body)
            if broken.connections:
                break
            assert resp.status == 200
        assert broken.connections == 1
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == "upstream_connection_lost"
        assert len(working.received) == answered_before
    finally:
        await broken.close()


async def test_every_replica_refusing_is_a_502_after_trying_each_once(
    aiohttp_client: Any,
) -> None:
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    client: Client = await aiohttp_client(
        create_app(upstreams_config({"name": "q", "urls": urls, "api": "chat", "models": ["*"]}))
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unreachable"
    samples = await scrape(client)
    tried = [
        samples[f"diglot_replica_requests_total{{replica=127.0.0.1:{port},upstream=q}}"]
        for port in ports
    ]
    assert tried == [1, 1]


def free_ports(count: int) -> list[int]:
    """Loopback ports nothing listens on, all different."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def key(name: str, replica: str) -> str:
    return f"{name}{{replica={replica},upstream=qwen}}"


def turns_key(outcome: str, replica: str) -> str:
    return f"diglot_session_turns_total{{outcome={outcome},replica={replica},upstream=qwen}}"


def replica_names(replicas: Replicas) -> list[str]:
    return [replica.replica for replica in replicas.pool.replicas]


async def scrape(client: Client) -> dict[str, float]:
    """diglot's replica and session samples, as `name{label=value,...}`."""
    text = await (await client.get("/metrics")).text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if re.match(r"diglot_(replica|session)_", sample.name):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_a_replica_that_accepts_no_connection_in_time_is_left_for_the_next(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    """Its listen queue full, the kernel drops the SYN: the connect times out, nothing was sent."""
    with contextlib.ExitStack() as stack:
        stuck = stack.enter_context(socket.socket())
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        for _ in range(2):  # fill the accept queue: later connections get no answer
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(stuck.getsockname())
        working = FakeUpstream(chat_answer("fine"))
        server = await aiohttp_server(working.app())
        urls = [f"http://127.0.0.1:{stuck.getsockname()[1]}/v1", str(server.make_url("/v1"))]
        table = {"name": "q", "urls": urls, "api": "chat", "models": ["*"], "connect_timeout": 0.2}
        client: Client = await aiohttp_client(
            await aiohttp_server(create_app(upstreams_config(table)))
        )
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [(await client.post("/v1/chat/completions", json=body)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert len(working.received) == 3
        stuck_name = f"127.0.0.1:{stuck.getsockname()[1]}"
        samples = await scrape(client)
        assert (
            samples[f"diglot_replica_errors_total{{kind=timeout,replica={stuck_name},upstream=q}}"]
            == 1
        )
        assert samples[f"diglot_replica_up{{replica={stuck_name},upstream=q}}"] == 0
