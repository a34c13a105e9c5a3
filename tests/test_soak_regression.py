"""Clients that hang up mid-stream leave nothing behind: no upstream answer, connection or task.

What the soak does for minutes, in a few dozen requests: each client reads the first bytes of a
stream and closes its connection while the upstream still holds the rest, with diglot serving as
the `diglot` command does (a client that goes away cancels its handler).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import asyncio.sslproto
import gc
import os
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_proto import ResponseHandler
from aiohttp.test_utils import TestServer

from diglot.proxy.app import create_app
from diglot.proxy.config import UpstreamSpec
from diglot.proxy.service import (
    READ_BYTES,
    LoopFactory,
    loop_factory,
    read_in_small_pieces,
    reads_tls,
)
from fixtures.fake_chat_upstream import FakeUpstream, Received, StreamReply
from fixtures.fake_responses_upstream import framed, message_item, response, stream_events
from tests.conftest import proxy_config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HANG_UPS = 24
HI = [{"role": "user", "content": "hi"}]
WAYS = {
    "chat over responses": ("/v1/chat/completions", {"messages": HI}),
    "chat over responses, n=2": ("/v1/chat/completions", {"messages": HI, "n": 2}),
    "responses passthrough": ("/v1/responses", {"input": "hi"}),
}


class Finished:
    """Counts diglot's handlers as they return or raise, so a test waits for them, not a clock."""

    def __init__(self) -> None:
        self._ended = asyncio.Semaphore(0)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            self._ended.release()

    async def wait(self) -> None:
        await asyncio.wait_for(self._ended.acquire(), 5)


@pytest.fixture
def holding_upstream(fake: FakeUpstream) -> FakeUpstream:
    """Every answer streams five events and then holds the rest until the test ends."""
    events = framed(stream_events(response(message_item("a long answer, " * 20))))
    held = asyncio.Event()

    def respond(_: Received) -> StreamReply:
        return StreamReply(events, done=False, hold=held, hold_after=5)

    fake.responder = respond
    return fake


@pytest.fixture
async def diglot(
    aiohttp_server: Any, fake_server: TestServer, holding_upstream: FakeUpstream
) -> tuple[Finished, str]:
    """diglot over the holding Responses upstream, with two upstream slots.

    A slot that a hung-up stream kept would turn a later request into a 429.
    """
    url = str(fake_server.make_url("/v1"))
    config = proxy_config(url, "responses", max_upstream_requests=2, upstream_queue_timeout=1.0)
    app = create_app(config)
    finished = Finished()
    app.middlewares.append(finished.middleware)
    server: TestServer = await aiohttp_server(app, auto_decompress=False)
    return finished, str(server.make_url(""))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def hang_up(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], finished: Finished
) -> None:
    """One stream read to its first bytes and abandoned; returns once diglot's handler has."""
    async with session.post(url, json=body) as resp:
        assert resp.status == 200
        assert await asyncio.wait_for(resp.content.readany(), 5)
        resp.close()
    await finished.wait()


def alive(kind: type) -> int:
    gc.collect()
    return sum(isinstance(thing, kind) for thing in gc.get_objects())


def diglot_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running diglot's own coroutines (an n > 1 request's pumps and upstream calls)."""
    return [task for task in asyncio.all_tasks() if f"{os.sep}proxy{os.sep}" in _source(task)]


def _source(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""


@pytest.mark.parametrize("way", list(WAYS))
async def test_hung_up_streams_leave_no_upstream_answer_connection_or_task(
    diglot: tuple[Finished, str], session: aiohttp.ClientSession, way: str
) -> None:
    finished, base = diglot
    path, fields = WAYS[way]
    body = {"model": "fake-model", "stream": True, **fields}
    await hang_up(session, base + path, body, finished)
    answers, connections = alive(aiohttp.ClientResponse), alive(ResponseHandler)
    for _ in range(HANG_UPS):
        await hang_up(session, base + path, body, finished)
    assert alive(aiohttp.ClientResponse) <= answers
    assert alive(ResponseHandler) <= connections
    assert diglot_tasks() == []


class _Reads(asyncio.Protocol):
    """The size of every read the event loop hands over, until `wanted` bytes have come."""

    def __init__(self, wanted: int) -> None:
        self.sizes: list[int] = []
        self.wanted = wanted
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.sizes.append(len(data))
        if sum(self.sizes) >= self.wanted and not self.done.done():
            self.done.set_result(None)


async def test_the_service_reads_sockets_in_pieces_that_do_not_fragment_the_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for kind in (asyncio.selector_events._SelectorSocketTransport, asyncio.sslproto.SSLProtocol):
        monkeypatch.setattr(kind, "max_size", 256 * 1024)  # restored after the test
    read_in_small_pieces()
    assert asyncio.sslproto.SSLProtocol.max_size == READ_BYTES
    sent = 4 * READ_BYTES
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"x" * sent)  # all waiting in the socket before the loop reads any
        loop = asyncio.get_running_loop()
        transport, reads = await loop.connect_accepted_socket(lambda: _Reads(sent), ours)
        await asyncio.wait_for(reads.done, 5)
        transport.close()
    assert reads.sizes == [READ_BYTES] * 4


def read_peak(new_loop: LoopFactory) -> int:
    """The most memory Python held at once while an event loop read one 100-byte message."""

    async def read() -> int:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            loop = asyncio.get_running_loop()
            transport, reads = await loop.connect_accepted_socket(lambda: _Reads(100), ours)
            tracemalloc.start()
            try:
                theirs.sendall(b"x" * 100)
                await asyncio.wait_for(reads.done, 5)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            transport.close()
        return peak

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(read())


def test_uvloop_reads_copy_out_only_what_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the small-reads patch is only for asyncio's loop: uvloop never asks for 256 KiB."""
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(asyncio.selector_events._SelectorSocketTransport, "max_size", 256 * 1024)
    assert read_peak(asyncio.new_event_loop) >= 256 * 1024  # what fragments the heap
    assert read_peak(uvloop.new_event_loop) < 16 * 1024


@pytest.mark.parametrize(
    ("upstream", "store", "uvloop_serves"),
    [
        ("http://127.0.0.1:8000/v1", "memory://", True),
        ("http://127.0.0.1:8000/v1", "redis://127.0.0.1:6379/0", True),
        ("https://api.example.com/v1", "memory://", False),
        ("http://127.0.0.1:8000/v1", "rediss://127.0.0.1:6379/0", False),
    ],
)
def test_the_service_runs_on_uvloop_unless_it_reads_tls(
    monkeypatch: pytest.MonkeyPatch, upstream: str, store: str, uvloop_serves: bool
) -> None:
    """uvloop's TLS reads allocate 256 KiB each, as asyncio's do unpatched: asyncio serves those."""
    uvloop = pytest.importorskip("uvloop")
    for kind in (asyncio.selector_events._SelectorSocketTransport, asyncio.sslproto.SSLProtocol):
        monkeypatch.setattr(kind, "max_size", 256 * 1024)  # restored after the test
    factory = loop_factory(proxy_config(upstream, store=store))
    assert factory is (uvloop.new_event_loop if uvloop_serves else None)  # None: asyncio's
    read_size = 256 * 1024 if uvloop_serves else READ_BYTES  # patched only where asyncio reads
    assert asyncio.sslproto.SSLProtocol.max_size == read_size


def test_without_uvloop_asyncio_serves_reading_in_small_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    for kind in (asyncio.selector_events._SelectorSocketTransport, asyncio.sslproto.SSLProtocol):
        monkeypatch.setattr(kind, "max_size", 256 * 1024)  # restored after the test
    assert loop_factory(proxy_config("http://127.0.0.1:8000/v1")) is None
    assert asyncio.sslproto.SSLProtocol.max_size == READ_BYTES


def test_an_https_replica_of_any_upstream_counts_as_reading_tls() -> None:
    upstreams = (
        UpstreamSpec(name="local", urls=("http://127.0.0.1:8000/v1",), api="chat", models=("q*",)),
        UpstreamSpec(
            name="hosted",
            urls=("http://127.0.0.1:8001/v1", "https://api.example.com/v1"),
            api="responses",
            models=("*",),
        ),
    )
    assert reads_tls(proxy_config("http://127.0.0.1:8000/v1", upstreams=upstreams))
    assert not reads_tls(proxy_config("http://127.0.0.1:8000/v1", upstreams=upstreams[:1]))
