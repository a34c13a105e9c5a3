"""A real `python -m diglot` stopping under background responses: SIGTERM drains them, then fails
what is left; after kill -9 the next start fails them once their lease runs out. None stays
`in_progress`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
from aiohttp.test_utils import TestServer
from openai import APIConnectionError, AsyncOpenAI

from diglot.proxy.background import LEASE
from diglot.proxy.conversation import tenant_of
from diglot.proxy.store import DAY
from diglot.proxy.store.sqlite import SqliteStore
from fixtures.fake_chat_upstream import FakeUpstream, StreamReply, text_chunks
from tests.test_background import events_of, until_delta
from tests.test_shutdown import Diglot, start, stop
from tests.validate import assert_valid_response, assert_valid_stream

KEY = "sk-alice"
TENANT = tenant_of({"Authorization": f"Bearer {KEY}"})
WAIT = 30.0  # seconds: a bound for each wait, never a synchronisation


def held(release: asyncio.Event) -> StreamReply:
    return StreamReply(text_chunks("Hel", "lo"), hold=release, hold_after=2)


def client_of(diglot: Diglot) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=diglot.url + "/v1", api_key=KEY, max_retries=0)


def other_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def stored(path: Path, response_id: str) -> tuple[dict[str, Any], list[bytes]]:
    """The response and its kept events as the SQLite file holds them."""
    store = SqliteStore(path, 30 * DAY, None, time.time)
    try:
        record = await store.get(TENANT, response_id)
        kept = await store.kept_events(response_id, -1)
    finally:
        await store.close()
    assert record is not None
    response: dict[str, Any] = msgspec.json.decode(record.body)["response"]
    return response, kept.frames


async def test_sigterm_drains_background_responses_then_fails_what_is_left(
    fake: FakeUpstream, fake_server: TestServer, free_port: int, tmp_path: Path
) -> None:
    finish, never = asyncio.Event(), asyncio.Event()
    fake.script(held(finish), held(never))
    path = tmp_path / "responses.db"
    diglot = await start(
        fake_server, free_port, None, "--store", f"sqlite://{path}", "--drain-timeout", "2",
        DIGLOT_SEAL_KEY="test seal key",
    )  # fmt: skip
    openai = client_of(diglot)
    try:
        await diglot.log_event("serving")
        streams = []
        for _ in range(2):
            stream = await openai.responses.create(
                model="m", input="hi", background=True, stream=True
            )
            streams.append((stream, await until_delta(stream)))
        diglot.process.send_signal(signal.SIGTERM)
        await diglot.log_event("draining")
        finish.set()
        (done_stream, done_head), (cut_stream, cut_head) = streams
        done = assert_valid_stream(done_head + await events_of(done_stream))
        cut = assert_valid_stream(cut_head + await events_of(cut_stream))
        assert await asyncio.wait_for(diglot.process.wait(), WAIT) == 0
    finally:
        await openai.close()
        await stop(diglot)
        never.set()
    assert done["status"] == "completed"
    assert cut["status"] == "failed"
    assert cut["error"] == {
        "code": "server_error",
        "message": "diglot was shut down before this background response finished (its drain "
        "timeout of 2 s ran out).",
    }
    for response in (done, cut):
        kept, frames = await stored(path, response["id"])
        assert kept == response
        assert frames[-1].startswith(f"event: response.{response['status']}\n".encode())


async def test_after_kill_9_the_next_start_fails_the_response_once_its_lease_ran_out(
    fake: FakeUpstream, fake_server: TestServer, free_port: int, tmp_path: Path
) -> None:
    release = asyncio.Event()
    fake.script(held(release))
    path = tmp_path / "responses.db"
    options = ("--store", f"sqlite://{path}")
    first = await start(fake_server, free_port, None, *options, DIGLOT_SEAL_KEY="k")
    openai = client_of(first)
    try:
        await first.log_event("serving")
        stream = await openai.responses.create(model="m", input="hi", background=True, stream=True)
        head = await until_delta(stream)
        response_id = head[0]["response"]["id"]
        store = SqliteStore(path, 30 * DAY, None, time.time)
        try:  # its progress is written with the heartbeat
            async with asyncio.timeout(WAIT):
                while await store.run_progress(TENANT, response_id) is None:
                    await asyncio.sleep(0.05)
        finally:
            await store.close()
        first.process.kill()
        assert await asyncio.wait_for(first.process.wait(), WAIT) == -signal.SIGKILL
        with contextlib.suppress(APIConnectionError):  # its connection went with it
            await events_of(stream)
    finally:
        await openai.close()
        await stop(first)
    killed_at = time.monotonic()
    second = await start(fake_server, other_port(), None, *options, DIGLOT_SEAL_KEY="k")
    openai = client_of(second)
    try:
        await second.log_event("serving")
        async with asyncio.timeout(WAIT):
            while (shown := await retrieve(openai, response_id))["status"] == "in_progress":
                await asyncio.sleep(0.1)
        assert time.monotonic() - killed_at < LEASE + 5
        tail = await openai.responses.retrieve(
            response_id, stream=True, starting_after=head[-1]["sequence_number"]
        )
        assert await events_of(tail) == [
            {"type": "response.failed", "response": shown,
             "sequence_number": head[-1]["sequence_number"] + 1}
        ]  # fmt: skip
    finally:
        await openai.close()
        await stop(second)
        release.set()
    assert shown["status"] == "failed"
    assert shown["error"] == {
        "code": "server_error",
        "message": "The diglot running this background response stopped before it finished "
        "(its lease of 10 s ran out).",
    }
    (item,) = shown["output"]
    assert (item["status"], item["content"][0]["text"]) == ("incomplete", "Hel")


async def retrieve(openai: AsyncOpenAI, response_id: str) -> dict[str, Any]:
    answer = await openai.get(f"/responses/{response_id}", cast_to=object)
    assert isinstance(answer, dict)
    assert_valid_response(answer)
    return answer
