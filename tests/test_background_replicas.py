"""Two diglots sharing one store (a SQLite file, a real Redis): a background response started on
one is polled, followed and cancelled from the other; one whose diglot is gone ends failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from openai import AsyncOpenAI

from diglot.proxy.background import LEASE, RUNS, Runs
from diglot.proxy.metrics import Metrics
from diglot.proxy.sse import encode_events
from diglot.proxy.store import DAY, KeptEvents, Record, open_store
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream
from fixtures.fake_chat_upstream import FakeUpstream, StreamReply, chunk, text_chunks
from tests.redis_server import redis_server, redis_url
from tests.response_context import make_context
from tests.test_background import events_of, until_delta
from tests.validate import assert_valid_response, assert_valid_stream

if TYPE_CHECKING:
    from tests.conftest import MakeServer

__all__ = ["redis_server", "redis_url"]
KEY = "sk-alice"
START = 1_700_000_000.0
WAIT = 10.0  # seconds: a bound for each wait, never a synchronisation


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/responses.db"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def replicas(
    make_proxy_server: MakeServer, store_url: str
) -> AsyncIterator[tuple[AsyncOpenAI, AsyncOpenAI]]:
    clients = []
    for _ in range(2):
        server = await make_proxy_server("chat", store=store_url, drain_timeout=1)
        assert server.app[RUNS].local == {}
        url = str(server.make_url("/v1"))
        clients.append(AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0))
    yield clients[0], clients[1]
    for client in clients:
        await client.close()


async def retrieve(openai: AsyncOpenAI, response_id: str) -> dict[str, Any]:
    answer = await openai.get(f"/responses/{response_id}", cast_to=object)
    assert isinstance(answer, dict)
    assert_valid_response(answer)
    return answer


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll another replica's view (it moves on with the heartbeat), within a bound."""
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_response_started_on_one_replica_is_followed_on_the_other(
    replicas: tuple[AsyncOpenAI, AsyncOpenAI], fake: FakeUpstream
) -> None:
    first, second = replicas
    release = asyncio.Event()
    fake.script(StreamReply(text_chunks("Hel", "lo", "!"), hold=release, hold_after=2))
    stream = await first.responses.create(model="m", input="hi", background=True, stream=True)
    head = await until_delta(stream)
    response_id = head[0]["response"]["id"]

    async def in_progress() -> bool:
        shown = await retrieve(second, response_id)
        return shown["status"] == "in_progress" and shown["output"] != []

    await until(in_progress)
    polled = await retrieve(second, response_id)
    assert polled["output"][0]["content"][0]["text"] == "Hel"
    followers = [
        await second.responses.retrieve(response_id, stream=True, starting_after=after)
        for after in (1, head[-1]["sequence_number"])
    ]
    release.set()
    reference = head + await events_of(stream)
    final = assert_valid_stream(reference)
    assert await events_of(followers[0]) == reference[2:]
    assert await events_of(followers[1]) == reference[len(head) :]
    assert await retrieve(second, response_id) == final


async def test_a_cancel_on_one_replica_ends_the_run_on_the_other(
    replicas: tuple[AsyncOpenAI, AsyncOpenAI], fake: FakeUpstream
) -> None:
    first, second = replicas
    release = asyncio.Event()
    fake.script(StreamReply(text_chunks("Hel", "lo"), hold=release, hold_after=2))
    stream = await first.responses.create(model="m", input="hi", background=True, stream=True)
    head = await until_delta(stream)
    response_id = head[0]["response"]["id"]
    follower = await second.responses.retrieve(response_id, stream=True, starting_after=0)
    cancelled = await second.post(f"/responses/{response_id}/cancel", cast_to=object)
    assert isinstance(cancelled, dict)
    assert_valid_response(cancelled)
    await asyncio.wait_for(fake.cancelled.wait(), WAIT)
    assert cancelled["status"] == "cancelled"
    assert cancelled["output"][0]["content"][0]["text"] == "Hel"
    reference = head + await events_of(stream)
    assert reference[-1]["response"] == cancelled
    assert await events_of(follower) == reference[1:]
    assert await retrieve(first, response_id) == cancelled
    release.set()


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/responses.db"
    url: str = request.getfixturevalue("redis_url")
    return url


async def test_a_run_whose_lease_lapsed_ends_failed_as_far_as_it_got(any_store_url: str) -> None:
    clock = FakeClock()
    store = open_store(any_store_url, DAY, None, clock)
    try:
        translator = ChatToResponsesStream(make_context(echo={"background": True}))
        queued = {**translator.snapshot(), "status": "queued"}
        events = translator.start() + translator.feed(chunk({"content": "Hel"}))
        progress = translator.snapshot()
        body = {"input": [], "response": queued}
        await store.put(Record("resp_test", "t1", None, START, orjson.dumps(body)))
        await store.claim_run("resp_test", "t1", "diglot_gone", lease=LEASE)
        frames = [(event["sequence_number"], encode_events([event])) for event in events]
        await store.keep_events("resp_test", START, frames, cap=10**6)
        await store.renew_runs("diglot_gone", {"resp_test": orjson.dumps(progress)}, lease=LEASE)
        runs = Runs(store, Metrics(), 1)
        await runs.sweep()
        assert await store.run_progress("t1", "resp_test") == orjson.dumps(progress)
        clock.now += LEASE + 1
        await runs.sweep()
        record = await store.get("t1", "resp_test")
        assert record is not None
        failed = orjson.loads(record.body)["response"]
        (item,) = progress["output"]
        assert failed == {
            **progress,
            "status": "failed",
            "error": {
                "code": "server_error",
                "message": "The diglot running this background response stopped before it "
                "finished (its lease of 10 s ran out).",
            },
            "output": [{**item, "status": "incomplete"}],
        }
        assert_valid_response(failed)
        tail = {"type": "response.failed", "response": failed, "sequence_number": len(events)}
        assert await store.kept_events("resp_test", len(events) - 1) == KeptEvents(
            [encode_events([tail])], 0, len(events) + 1
        )
        assert await store.run_progress("t1", "resp_test") is None
        assert await store.lapsed_runs("diglot_test", lease=10) == []
    finally:
        await store.close()
