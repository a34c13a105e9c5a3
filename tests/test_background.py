"""Background responses in front of a chat upstream, driven by the real openai SDK: queued at
once, polled as they go, streamed again from any event, cancelled, detached from their client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI, AsyncStream
from openai.types.responses import ResponseStreamEvent

from diglot.proxy.background import RUNS, Follower, Runs
from diglot.proxy.metrics import Metrics
from diglot.proxy.store import KeptEvents, Record
from diglot.proxy.store.memory import MemoryStore
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Hang,
    Reply,
    StreamReply,
    completion,
    text_chunks,
)
from tests.validate import (
    _sdk,
    assert_valid_response,
    assert_valid_stream,
    assert_valid_stream_event,
)

if TYPE_CHECKING:
    from tests.conftest import MakeProxy, MakeServer

KEY = "sk-alice"
WAIT = 10.0  # seconds: a bound for each wait, never a synchronisation


@pytest.fixture
async def server(make_proxy_server: MakeServer) -> TestServer:
    return await make_proxy_server("chat", drain_timeout=1)


@pytest.fixture
async def openai(server: TestServer) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=KEY, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def session(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(str(server.make_url("/")), headers=headers) as client:
        yield client


def held(*pieces: str, release: asyncio.Event) -> StreamReply:
    """The role chunk and the first piece, then a wait for `release`, then the rest."""
    return StreamReply(text_chunks(*pieces), hold=release, hold_after=2)


async def events_of(stream: AsyncStream[ResponseStreamEvent]) -> list[dict[str, Any]]:
    async with stream:
        return [event.to_dict() async for event in stream]


async def until_delta(stream: AsyncStream[ResponseStreamEvent]) -> list[dict[str, Any]]:
    """The events up to the first text delta (the upstream holds after it)."""
    seen = []
    async for event in stream:
        seen.append(event.to_dict())
        if event.type == "response.output_text.delta":
            return seen
    raise AssertionError(f"the stream ended before a text delta: {seen}")


async def raw(openai: AsyncOpenAI, method: str, path: str, **body: Any) -> dict[str, Any]:
    """A route's JSON as sent (the SDK models would fill in what the body left out)."""
    answer = await openai.post(path, cast_to=object, body=body) if method == "POST" else None
    if answer is None:
        answer = await openai.get(path, cast_to=object)
    assert isinstance(answer, dict)
    return answer


async def create(openai: AsyncOpenAI, **body: Any) -> dict[str, Any]:
    answer = await raw(openai, "POST", "/responses", model="m", input="hi", **body)
    assert_valid_response(answer)
    return answer


async def retrieve(openai: AsyncOpenAI, response_id: str) -> dict[str, Any]:
    answer = await raw(openai, "GET", f"/responses/{response_id}")
    assert_valid_response(answer)
    return answer


async def cancel(openai: AsyncOpenAI, response_id: str) -> dict[str, Any]:
    answer = await raw(openai, "POST", f"/responses/{response_id}/cancel")
    assert_valid_response(answer)
    return answer


def as_queued(final: dict[str, Any]) -> dict[str, Any]:
    """What the create answer showed of a response before it ran."""
    return {**final, "status": "queued", "model": "m", "output": [], "usage": None,
            "completed_at": None}  # fmt: skip


def text_item(final_item: dict[str, Any], text: str, status: str) -> dict[str, Any]:
    """The message item of `final_item` as it stood with `text` so far."""
    part = {**final_item["content"][0], "text": text}
    return {**final_item, "status": status, "content": [part]}


async def test_a_background_response_is_queued_then_polled_to_its_end(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(held("Hel", "lo", release=release))
    queued = await create(openai, background=True)
    following = await openai.responses.retrieve(queued["id"], stream=True)
    await until_delta(following)
    polled = await retrieve(openai, queued["id"])
    release.set()
    rest = await events_of(following)
    final = await retrieve(openai, queued["id"])
    assert rest[-1] == {"type": "response.completed", "response": final,
                        "sequence_number": rest[-1]["sequence_number"]}  # fmt: skip
    assert final["status"] == "completed" and final["background"] is True
    assert [part["text"] for part in final["output"][0]["content"]] == ["Hello"]
    assert queued == as_queued(final)
    assert polled == {
        **final,
        "status": "in_progress",
        "completed_at": None,
        "usage": None,
        "output": [text_item(final["output"][0], "Hel", "in_progress")],
    }
    asked = fake.last.json()
    assert (asked["stream"], asked["stream_options"]) == (True, {"include_usage": True})


async def test_a_response_waiting_for_the_upstream_stays_queued(
    openai: AsyncOpenAI, fake: FakeUpstream, server: TestServer
) -> None:
    fake.script(Hang())
    queued = await create(openai, background=True)
    await asyncio.wait_for(fake.arrived.wait(), WAIT)
    assert await retrieve(openai, queued["id"]) == queued
    cancelled = await cancel(openai, queued["id"])
    await asyncio.wait_for(fake.cancelled.wait(), WAIT)
    assert cancelled == {**queued, "status": "cancelled"}
    assert await retrieve(openai, queued["id"]) == cancelled
    assert server.app[RUNS].local == {}


async def test_the_response_goes_on_after_its_client_goes_away(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(held("Hel", "lo", release=release))
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    seen = await until_delta(stream)
    await stream.close()  # the client goes away mid-stream
    release.set()
    response_id = seen[0]["response"]["id"]
    rest = await events_of(
        await openai.responses.retrieve(
            response_id, stream=True, starting_after=seen[-1]["sequence_number"]
        )
    )
    final = assert_valid_stream(seen + rest)
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert await retrieve(openai, response_id) == final
    assert not fake.cancelled.is_set()


async def test_a_finished_stream_is_replayed_from_every_event(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hel", "lo", "!")))
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    reference = await events_of(stream)
    final = assert_valid_stream(reference)
    assert final["background"] is True
    response_id = final["id"]
    replayed = await events_of(await openai.responses.retrieve(response_id, stream=True))
    assert replayed == reference
    for after in range(len(reference)):
        resumed = await openai.responses.retrieve(response_id, stream=True, starting_after=after)
        assert await events_of(resumed) == reference[after + 1 :], after


async def test_followers_attached_mid_stream_get_exactly_the_events_they_missed(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(held("Hel", "lo", "!", release=release))
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    head = await until_delta(stream)
    response_id = head[0]["response"]["id"]
    followers = [await openai.responses.retrieve(response_id, stream=True)]
    for event in head:  # each attached before the upstream goes on
        followers.append(
            await openai.responses.retrieve(
                response_id, stream=True, starting_after=event["sequence_number"]
            )
        )
    release.set()
    reference = head + await events_of(stream)
    assert_valid_stream(reference)
    got = await asyncio.gather(*(events_of(follower) for follower in followers))
    assert got[0] == reference
    for after, resumed in enumerate(got[1:]):
        assert resumed == reference[after + 1 :], after


async def test_a_cancel_mid_stream_ends_the_response_and_the_upstream_request(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(held("Hel", "lo", release=release))
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    head = await until_delta(stream)
    response_id = head[0]["response"]["id"]
    other = await openai.responses.retrieve(response_id, stream=True, starting_after=1)
    cancelled = await cancel(openai, response_id)
    await asyncio.wait_for(fake.cancelled.wait(), WAIT)
    rest = await events_of(stream)
    assert_valid_stream(head + rest)
    assert [event["type"] for event in rest] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    part = rest[1]["part"]
    assert part["text"] == "Hel"
    item = {**head[2]["item"], "status": "incomplete", "content": [part], "phase": "final_answer"}
    assert rest[2]["item"] == item
    assert rest[-1]["response"] == cancelled
    assert cancelled["status"] == "cancelled" and cancelled["output"] == [item]
    assert await events_of(other) == (head + rest)[2:]
    assert await retrieve(openai, response_id) == cancelled
    assert await cancel(openai, response_id) == cancelled  # again: as it is
    release.set()


async def test_cancel_refuses_what_it_cannot_cancel(
    openai: AsyncOpenAI, fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.script(Reply(completion("Hi")), StreamReply(text_chunks("Hi")))
    plain = await create(openai, stream=False)
    done = await events_of(
        await openai.responses.create(model="m", input="hi", background=True, stream=True)
    )
    finished_id = done[-1]["response"]["id"]
    cases = [
        (KEY, plain["id"], 400, f"Response '{plain['id']}' was not created in the background; "
         "only background responses can be cancelled.", "not_background"),
        (KEY, finished_id, 400, "Cannot cancel a completed response.", "invalid_status"),
        (KEY, "resp_unknown", 404, "Response with id 'resp_unknown' not found.", None),
        ("sk-bob", finished_id, 404, f"Response with id '{finished_id}' not found.", None),
    ]  # fmt: skip
    for key, response_id, status, message, code in cases:
        async with session.post(
            f"/v1/responses/{response_id}/cancel", headers={"Authorization": f"Bearer {key}"}
        ) as answer:
            assert answer.status == status
            assert await answer.json() == {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
    assert await retrieve(openai, finished_id) == done[-1]["response"]


async def test_background_needs_the_response_stored(
    session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    body = {"model": "m", "input": "hi", "background": True, "store": False}
    async with session.post("/v1/responses", json=body) as answer:
        assert answer.status == 400
        assert await answer.json() == {
            "error": {
                "message": "Background responses are stored to be polled: 'store' cannot be false.",
                "type": "invalid_request_error",
                "param": "store",
                "code": "invalid_value",
            }
        }
    assert fake.received == []


async def test_an_upstream_refusal_ends_the_response_failed(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply({"error": {"message": "The model is loading."}}, status=503))
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    events = await events_of(stream)
    final = assert_valid_stream(events)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert final["status"] == "failed"
    assert final["error"] == {"code": "server_error", "message": "The model is loading."}
    assert await retrieve(openai, final["id"]) == final


async def test_streaming_a_response_again_refuses_what_it_cannot_stream(
    openai: AsyncOpenAI, fake: FakeUpstream, session: aiohttp.ClientSession, server: TestServer
) -> None:
    fake.script(Reply(completion("Hi")), StreamReply(text_chunks("Hel", "lo", "!")))
    plain = await create(openai, stream=False)
    server.app[RUNS].event_bytes = 2500  # a few events' worth: the oldest go
    events = await events_of(
        await openai.responses.create(model="m", input="hi", background=True, stream=True)
    )
    assert_valid_stream(events)
    response_id = events[0]["response"]["id"]
    for event in events:
        assert_valid_stream_event(event)
    kept = await server.app[RUNS].store.kept_events(response_id, -1)
    assert 0 < kept.first < len(events) - 1
    cases = [
        (plain["id"], "", "stream", "invalid_value", f"Response '{plain['id']}' was not created "
         "in the background, so it has no events to stream; retrieve it without 'stream'."),
        (response_id, "&starting_after=x", "starting_after", "invalid_value", "Invalid "
         "'starting_after': expected the sequence number of an event (an integer from 0)."),
        (response_id, "&starting_after=0", "starting_after", "events_not_kept", "The events of "
         f"response '{response_id}' after sequence number 0 are no longer kept (past 2500 bytes "
         f"the oldest go); resume from 'starting_after' {kept.first - 1} or later."),
    ]  # fmt: skip
    for rid, query, param, code, message in cases:
        async with session.get(f"/v1/responses/{rid}?stream=true{query}") as answer:
            assert answer.status == 400
            assert await answer.json() == {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": param,
                    "code": code,
                }
            }
    resumed = await openai.responses.retrieve(
        response_id, stream=True, starting_after=kept.first - 1
    )
    assert await events_of(resumed) == events[kept.first :]


async def test_background_responses_are_counted(
    openai: AsyncOpenAI, fake: FakeUpstream, session: aiohttp.ClientSession, server: TestServer
) -> None:
    release = asyncio.Event()
    fake.script(Hang(), held("Hel", "lo", release=release))
    waiting = await create(openai, background=True)
    await asyncio.wait_for(fake.arrived.wait(), WAIT)
    stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
    head = await until_delta(stream)
    running = server.app[RUNS].local[head[0]["response"]["id"]].task
    assert "diglot_background_queue_depth 1.0" in await scraped(session)
    await cancel(openai, waiting["id"])
    release.set()
    await events_of(stream)
    assert running is not None
    await asyncio.wait_for(running, WAIT)  # counted as the run ends, after its last event
    text = await scraped(session)
    assert "diglot_background_queue_depth 0.0" in text
    assert 'diglot_background_responses_total{status="cancelled"} 1.0' in text
    assert 'diglot_background_responses_total{status="completed"} 1.0' in text


async def scraped(session: aiohttp.ClientSession) -> str:
    async with session.get("/metrics") as answer:
        return await answer.text()


async def test_in_front_of_a_responses_upstream_cancel_and_streams_pass_through(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    cancelled = {"id": "resp_1", "object": "response", "status": "cancelled", "output": []}
    frames = [b'event: response.output_text.delta\ndata: {"sequence_number": 4}\n\n',
              b'event: response.completed\ndata: {"sequence_number": 5}\n\n']  # fmt: skip
    fake.script(Reply(cancelled), StreamReply(frames, done=False, hold=release, hold_after=1))
    proxy = await make_proxy("responses")
    auth = {"Authorization": "Bearer sk-up"}
    answer = await proxy.post("/v1/responses/resp_1/cancel", headers=auth)
    assert (answer.status, await answer.json()) == (200, cancelled)
    streamed = await proxy.get("/v1/responses/resp_1?stream=true&starting_after=3", headers=auth)
    assert streamed.status == 200
    assert await asyncio.wait_for(streamed.content.readuntil(b"\n\n"), WAIT) == frames[0]
    release.set()
    assert await streamed.read() == frames[1]
    seen = [(r.method, r.path, r.query) for r in fake.received]
    assert seen == [
        ("POST", "/v1/responses/resp_1/cancel", ""),
        ("GET", "/v1/responses/resp_1", "stream=true&starting_after=3"),
    ]
    assert all(r.headers["Authorization"] == "Bearer sk-up" for r in fake.received)


def frame(seq: int, kind: str = "response.output_text.delta") -> bytes:
    return f'event: {kind}\ndata: {{"sequence_number": {seq}}}\n\n'.encode()


async def follow(kept: KeptEvents, *batches: list[tuple[int, bytes]]) -> bytes:
    """What a follower from the start sends, given the kept events it read and the batches the
    run hands it afterwards."""
    runs = Runs(MemoryStore(60, None, time.time), Metrics(), 1)
    inbox: asyncio.Queue[list[tuple[int, bytes]] | None] = asyncio.Queue()
    for batch in batches:
        inbox.put_nowait(batch)
    follower = Follower(runs, "t1", "resp_1", -1, inbox=inbox)
    return b"".join([frames async for frames in follower.frames(kept, "in_progress")])


async def test_a_follower_sends_each_event_once_whichever_way_it_came() -> None:
    kept = KeptEvents([frame(0), frame(1), frame(2)], 0, 3)
    end = frame(4, "response.completed")
    sent = await follow(kept, [(1, frame(1)), (2, frame(2)), (3, frame(3))], [(4, end)])
    assert sent == frame(0) + frame(1) + frame(2) + frame(3) + end


async def test_a_follower_that_would_skip_events_ends_with_an_error_event() -> None:
    sent = await follow(KeptEvents([frame(0)], 0, 1), [(3, frame(3))])
    error = {
        "type": "error",
        "code": "events_not_kept",
        "message": "The events of response 'resp_1' after sequence number 0 are no longer kept; "
        "retrieve the response instead.",
        "param": None,
        "sequence_number": 1,
    }
    _sdk(ResponseStreamEvent, error)  # OpenAI's flat error event (Open Responses nests it)
    assert sent == frame(0) + b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"


class _LastEventLater(MemoryStore):
    """A run's store elsewhere: its finished response is stored, and its last event (numbered
    `last`) kept just after a follower read the response."""

    last = 0

    async def get(self, tenant: str, response_id: str) -> Record | None:
        record = await super().get(tenant, response_id)
        end = [(self.last, frame(self.last, "response.completed"))]
        await self.keep_events(response_id, time.time(), end, 1024)
        return record


async def _ended_response(store: MemoryStore) -> Follower:
    """A completed response in `store`, and a follower of it from the start."""
    body = orjson.dumps({"input": [], "response": {"status": "completed"}})
    await store.put(Record("resp_1", "t1", None, time.time(), body))
    return Follower(Runs(store, Metrics(), 1), "t1", "resp_1", -1)


async def test_a_follower_that_sees_the_response_ended_still_sends_its_last_events() -> None:
    follower = await _ended_response(_LastEventLater(60, None, time.time))
    sent = [frames async for frames in follower.frames(KeptEvents([], 0, 0), "in_progress")]
    assert sent == [frame(0, "response.completed")]


async def test_a_follower_that_comes_as_the_response_ends_still_sends_its_last_events() -> None:
    store = _LastEventLater(60, None, time.time)
    store.last = 1
    follower = await _ended_response(store)
    kept = KeptEvents([frame(0)], 0, 1)
    sent = [frames async for frames in follower.frames(kept, "completed")]
    assert sent == [frame(0), frame(1, "response.completed")]


class _Unpolled(MemoryStore):
    """A store a follower must not poll: the response it follows has ended."""

    async def get(self, tenant: str, response_id: str) -> Record | None:
        raise AssertionError("the follower waited for more events")


async def test_a_follower_that_saw_the_last_event_ends_at_once() -> None:
    store = _Unpolled(60, None, time.time)
    end = [(0, frame(0)), (1, frame(1, "response.completed"))]
    await store.keep_events("resp_1", time.time(), end, 1024)
    follower = Follower(Runs(store, Metrics(), 1), "t1", "resp_1", 1)
    kept = await follower.catch_up()
    assert [frames async for frames in follower.frames(kept, "completed")] == []
