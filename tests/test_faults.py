"""Fault injection: upstreams that refuse, reset, hang, talk garbage or break off; clients leaving.

Every fault runs through each direction diglot serves (Responses clients over a chat upstream,
Chat clients over a Responses upstream, and passthrough of both shapes), streamed and not.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from diglot.proxy.app import create_app
from diglot.proxy.metrics import METRICS
from diglot.proxy.state import PROXY
from fixtures import fake_chat_upstream as chat_fake
from fixtures import fake_responses_upstream as responses_fake
from fixtures.fake_chat_upstream import FakeUpstream, Hang, Reply, StreamReply
from tests.conftest import proxy_config
from tests.validate import assert_valid_stream

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Route:
    """One way through diglot: the direction it counts, the upstream's API, the client's path."""

    direction: str
    api: str
    path: str

    def body(self, stream: bool) -> dict[str, Any]:
        if self.path == "/v1/responses":
            body: dict[str, Any] = {"model": "fake-model", "input": "hi"}
        else:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        return {**body, "stream": True} if stream else body

    def stream_parts(self) -> list[dict[str, Any] | bytes]:
        """The upstream's stream of the answer "Hello", as the fake writes it."""
        if self.api == "chat":
            return [*chat_fake.text_chunks("Hel", "lo"), b"data: [DONE]\n\n"]
        final = responses_fake.response(responses_fake.message_item("Hello"))
        return responses_fake.framed(responses_fake.stream_events(final))

    def answer(self) -> Reply:
        if self.api == "chat":
            return Reply(chat_fake.completion("Hello"))
        return Reply(responses_fake.response(responses_fake.message_item("Hello")))


ROUTES = [
    Route("responses->chat", "chat", "/v1/responses"),
    Route("chat->responses", "responses", "/v1/chat/completions"),
    Route("passthrough", "chat", "/v1/chat/completions"),
    Route("passthrough", "responses", "/v1/responses"),
]
TRANSLATED = [route for route in ROUTES if route.direction != "passthrough"]


def route_id(route: Route) -> str:
    return f"{route.direction}:{route.api}"


def stream_of(parts: list[dict[str, Any] | bytes], **script: Any) -> StreamReply:
    """A StreamReply writing `parts` exactly (their own [DONE], if any)."""
    return StreamReply(parts, done=False, **script)


def faults(client: Client, direction: str) -> dict[str, float]:
    """The upstream faults and retries counted for `direction`, by kind."""
    registry = client.server.app[METRICS].registry  # type: ignore[union-attr]
    counted: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.labels.get("direction") != direction or not sample.value:
                continue
            if sample.name == "diglot_upstream_errors_total":
                counted[sample.labels["kind"]] = sample.value
            elif sample.name == "diglot_upstream_retries_total":
                counted["retries"] = sample.value
    return counted


def responses_events(raw: bytes) -> list[dict[str, Any]]:
    """OpenAI's Responses framing, strictly: `event:`, one `data:` line, a blank line."""
    events = []
    assert raw.endswith(b"\n\n"), raw[-200:]
    for block in raw.split(b"\n\n")[:-1]:
        event_line, data_line = block.split(b"\n")
        event = orjson.loads(data_line.removeprefix(b"data: "))
        assert event_line == b"event: " + event["type"].encode()
        events.append(event)
    return events


def chat_chunks(raw: bytes) -> list[Any]:
    """Chat framing: `data: <json>` blocks, the last one `[DONE]`."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    chunks = []
    for block in raw.split(b"\n\n")[:-2]:
        assert block.startswith(b"data: "), block
        chunks.append(orjson.loads(block.removeprefix(b"data: ")))
    return chunks


async def stream_text(resp: aiohttp.ClientResponse, route: Route) -> str:
    """The answer's text from a translated stream that completed."""
    raw = await resp.read()
    if route.path == "/v1/responses":
        final = assert_valid_stream(responses_events(raw))
        assert final["status"] == "completed"
        return "".join(part["text"] for part in final["output"][0]["content"])
    chunks = chat_chunks(raw)
    assert not any("error" in chunk for chunk in chunks)
    return "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
    )


async def cut_off(resp: aiohttp.ClientResponse, route: Route) -> str | None:
    """A stream the upstream cut short: a broken body in passthrough (None), else its error."""
    if route.direction == "passthrough":
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        return None
    return await stream_error(resp, route)


async def stream_error(resp: aiohttp.ClientResponse, route: Route) -> str:
    """The message of the terminal error a translated stream ended with."""
    assert resp.status == 200
    raw = await resp.read()
    if route.path == "/v1/responses":
        events = responses_events(raw)
        assert_valid_stream(events)
        assert events[-1]["type"] == "response.failed"
        message: str = events[-1]["response"]["error"]["message"]
        return message
    errors = [chunk for chunk in chat_chunks(raw) if "error" in chunk]
    assert len(errors) == 1
    message = errors[0]["error"]["message"]
    return message


async def error_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


# --- a bare TCP upstream, for faults below HTTP -------------------------------------------------

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """A loopback listener that runs `answer` on every connection and counts them."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.answer(reader, writer)
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def sse_head(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + extra


def encoded(parts: list[dict[str, Any] | bytes]) -> bytes:
    return b"".join(part if isinstance(part, bytes) else chat_fake.sse(part) for part in parts)


MakeRaw = Callable[..., Awaitable[tuple[Client, RawUpstream]]]


@pytest.fixture
async def make_raw(aiohttp_client: Any) -> AsyncIterator[MakeRaw]:
    """diglot in front of a RawUpstream."""
    started: list[RawUpstream] = []

    async def make(answer: Answer, api: str, **overrides: Any) -> tuple[Client, RawUpstream]:
        upstream = RawUpstream(answer)
        await upstream.start()
        started.append(upstream)
        client: Client = await aiohttp_client(
            create_app(proxy_config(upstream.url, api, **overrides))
        )
        return client, upstream

    yield make
    for upstream in started:
        await upstream.close()


# --- connecting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_refusing_upstream_is_a_502_after_one_retry(
    aiohttp_client: Any, free_port: int, route: Route, stream: bool
) -> None:
    config = proxy_config(f"http://127.0.0.1:{free_port}/v1", route.api)
    client: Client = await aiohttp_client(create_app(config))
    resp = await client.post(route.path, json=route.body(stream))
    assert resp.status == 502
    error = await error_of(resp)
    assert (error["type"], error["code"]) == ("server_error", "upstream_unreachable")
    assert error["message"].startswith("The upstream could not be reached: ")
    assert faults(client, route.direction) == {"refused": 1, "retries": 1}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_connect_that_fails_once_is_retried_and_served(
    make_proxy: MakeProxy,
    fake: FakeUpstream,
    fake_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    route: Route,
) -> None:
    connect = aiohttp.TCPConnector.connect
    refused: list[object] = []

    async def refuse_once(self: aiohttp.TCPConnector, req: Any, **kwargs: Any) -> Any:
        if req.url.port == fake_server.port and not refused:
            refused.append(req.url)
            raise aiohttp.ClientConnectorError(req.connection_key, ConnectionRefusedError(111, "x"))
        return await connect(self, req, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "connect", refuse_once)
    fake.script(route.answer())
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(False))
    assert resp.status == 200, await resp.text()
    assert len(refused) == 1
    assert len(fake.received) == 1
    assert faults(client, route.direction) == {"retries": 1}


@pytest.mark.parametrize("when", ["before reading", "after reading"])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_reset_connection_is_a_502_and_not_retried(
    make_raw: MakeRaw, route: Route, when: str
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if when == "after reading":
            await read_request(reader)
        reset(writer)

    client, upstream = await make_raw(answer, route.api)
    resp = await client.post(route.path, json=route.body(False))
    assert resp.status == 502
    error = await error_of(resp)
    assert (error["type"], error["code"]) == ("server_error", "upstream_connection_lost")
    assert error["message"].startswith("The upstream closed the connection without answering")
    assert upstream.connections == 1
    assert faults(client, route.direction) == {"reset": 1}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_an_upstream_that_closes_without_answering_is_a_502(
    make_raw: MakeRaw, route: Route
) -> None:
    async def answer(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await read_request(reader)

    client, upstream = await make_raw(answer, route.api)
    resp = await client.post(route.path, json=route.body(True))
    assert resp.status == 502
    assert (await error_of(resp))["message"] == (
        "The upstream closed the connection without answering: Server disconnected"
    )
    assert upstream.connections == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_hanging_upstream_is_a_504(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route, stream: bool
) -> None:
    fake.script(Hang())
    client = await make_proxy(route.api, read_timeout=0.2)
    resp = await client.post(route.path, json=route.body(stream))
    assert resp.status == 504
    assert await error_of(resp) == {
        "message": "The upstream did not answer in time.",
        "type": "server_error",
        "param": None,
        "code": "upstream_timeout",
    }
    assert faults(client, route.direction) == {"timeout": 1}


# --- answers diglot cannot use -------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_an_answer_that_is_not_http_is_a_502(make_raw: MakeRaw, route: Route) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    client, _ = await make_raw(answer, route.api)
    resp = await client.post(route.path, json=route.body(False))
    assert resp.status == 502
    error = await error_of(resp)
    assert error["code"] == "bad_upstream_response"
    assert error["message"].startswith("The upstream's answer is not valid HTTP: Bad status line")
    assert faults(client, route.direction) == {"bad_response": 1}


@pytest.mark.parametrize(
    ("body", "message", "kind"),
    [
        (b"<html>busy</html>", None, "bad_json"),
        (b'{"choices": [', None, "bad_json"),
        (
            b"[1, 2]",
            "The upstream answered 200 with JSON that is not a chat completion: [1, 2]",
            "bad_response",
        ),
    ],
)
async def test_a_whole_answer_that_is_not_a_json_object_is_a_502_naming_it(
    make_proxy: MakeProxy, fake: FakeUpstream, body: bytes, message: str | None, kind: str
) -> None:
    fake.script(Reply(body))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=ROUTES[0].body(False))
    assert resp.status == 502
    error = await error_of(resp)
    assert (error["type"], error["code"]) == ("server_error", "bad_upstream_response")
    if message is None:
        assert error["message"].startswith("The upstream's answer is not JSON (")
    else:
        assert error["message"] == message
    assert faults(client, "responses->chat") == {kind: 1}


async def test_a_chat_client_gets_a_502_for_a_non_json_responses_answer(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply(b"<html>busy</html>"))
    client = await make_proxy("responses")
    resp = await client.post("/v1/chat/completions", json=ROUTES[1].body(False))
    assert resp.status == 502
    assert (await error_of(resp))["code"] == "bad_upstream_response"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.direction == "passthrough"], ids=route_id)
async def test_passthrough_relays_a_non_json_answer_untouched(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    fake.script(Reply(b"<html>busy</html>", content_type="text/html"))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(False))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert await resp.read() == b"<html>busy</html>"


@pytest.mark.parametrize(
    ("reply", "content_type"),
    [
        (Reply(chat_fake.completion("Hello")), "application/json"),
        (Reply(b"<html>busy</html>", content_type="text/html"), "text/html"),
    ],
)
async def test_a_stream_request_answered_without_an_event_stream_is_a_502(
    make_proxy: MakeProxy, fake: FakeUpstream, reply: Reply, content_type: str
) -> None:
    fake.script(reply)
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", json=ROUTES[0].body(True))
    assert resp.status == 502
    assert await error_of(resp) == {
        "message": f"The upstream answered a streaming request with {content_type}, "
        "not an event stream.",
        "type": "server_error",
        "param": None,
        "code": "bad_upstream_response",
    }
    assert faults(client, "responses->chat") == {"bad_sse": 1}


# --- streams that break --------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_stream_that_closes_midway_ends_with_the_clients_error(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    parts = route.stream_parts()
    fake.script(stream_of(parts[: len(parts) // 2], then="drop"))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(True))
    message = await cut_off(resp, route)
    assert message is None or message.startswith("The upstream connection broke mid-stream: ")
    assert faults(client, route.direction) == {"broken_stream": 1}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_half_an_http_chunk_then_close_is_a_broken_stream(
    make_raw: MakeRaw, route: Route
) -> None:
    first = encoded(route.stream_parts()[:2])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sse_head(b"Transfer-Encoding: chunked\r\n\r\n"))
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        writer.write(b'400\r\ndata: {"id"')  # a chunk of 1024 bytes, cut after 10
        await writer.drain()

    client, _ = await make_raw(answer, route.api)
    resp = await client.post(route.path, json=route.body(True))
    message = await cut_off(resp, route)
    assert message is None or message.startswith("The upstream connection broke mid-stream: ")
    assert faults(client, route.direction) == {"broken_stream": 1}


@pytest.mark.parametrize("route", TRANSLATED, ids=route_id)
async def test_half_an_event_at_the_end_of_the_body_fails_the_stream(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    parts = route.stream_parts()
    fake.script(stream_of([*parts[:2], b'data: {"id": "cut'], then="end"))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(True))
    message = await stream_error(resp, route)
    assert message.endswith("that is not JSON.")
    if route.direction == "responses->chat":
        assert faults(client, route.direction) == {"bad_json": 1}


@pytest.mark.parametrize("route", TRANSLATED, ids=route_id)
async def test_garbage_instead_of_events_fails_the_stream(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    fake.script(stream_of([b"\x00\xff garbage\r\n\r\n", b"<html>oops</html>\n\n"]))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(True))
    assert await stream_error(resp, route)
    if route.direction == "responses->chat":
        assert faults(client, route.direction) == {"broken_stream": 1}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_stream_that_stalls_midway_times_out(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    parts = route.stream_parts()
    fake.script(stream_of(parts, hold=asyncio.Event(), hold_after=len(parts) // 2))
    client = await make_proxy(route.api, read_timeout=0.2)
    resp = await client.post(route.path, json=route.body(True))
    message = await cut_off(resp, route)
    assert message in (None, "The upstream stopped sending in the middle of the answer.")
    if route.direction != "chat->responses":
        assert faults(client, route.direction) == {"timeout": 1}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_slow_byte_by_byte_stream_arrives_whole(make_raw: MakeRaw, route: Route) -> None:
    """Each byte is its own write, with 100 short pauses between them that add up to longer than
    the read timeout (which bounds each gap, not the whole answer)."""
    body = encoded(route.stream_parts())
    step = -(-len(body) // 100)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sse_head(b"Connection: close\r\n\r\n"))
        for index in range(len(body)):
            writer.write(body[index : index + 1])
            await writer.drain()
            if index % step == 0:
                await asyncio.sleep(0.005)  # pacing the upstream, not waiting for anything

    client, _ = await make_raw(answer, route.api, read_timeout=0.3)
    resp = await client.post(route.path, json=route.body(True))
    assert resp.status == 200
    if route.direction == "passthrough":
        assert await resp.read() == body
    else:
        assert await stream_text(resp, route) == "Hello"
    assert faults(client, route.direction) == {}


# --- upstream error statuses ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (429, "http_4xx", "rate_limit_error"),
        (500, "http_5xx", "server_error"),
        (503, "http_5xx", "server_error"),
    ],
)
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_error_statuses_are_passed_on_with_retry_after(
    make_proxy: MakeProxy,
    fake: FakeUpstream,
    route: Route,
    status: int,
    kind: str,
    error_type: str,
    stream: bool,
) -> None:
    fake.script(Reply({"error": {"message": "busy"}}, status=status, headers={"Retry-After": "3"}))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(stream))
    assert resp.status == status
    assert resp.headers["Retry-After"] == "3"
    if route.direction == "passthrough":  # already OpenAI's shape: relayed as it came
        assert await resp.read() == b'{"error":{"message":"busy"}}'
    else:
        assert await error_of(resp) == {
            "message": "busy",
            "type": error_type,
            "param": None,
            "code": None,
        }
    assert faults(client, route.direction) == {kind: 1}


# --- clients that leave --------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_client_leaving_mid_stream_cancels_the_upstream_within_a_second(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route
) -> None:
    parts = route.stream_parts()
    fake.script(stream_of(parts, hold=asyncio.Event(), hold_after=len(parts) // 2))
    client = await make_proxy(route.api)
    resp = await client.post(route.path, json=route.body(True))
    assert resp.status == 200
    assert await asyncio.wait_for(resp.content.readany(), 5)
    resp.close()
    await asyncio.wait_for(fake.cancelled.wait(), 1)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_client_leaving_before_the_answer_cancels_the_upstream_within_a_second(
    make_proxy: MakeProxy, fake: FakeUpstream, route: Route, stream: bool
) -> None:
    fake.script(Hang())
    client = await make_proxy(route.api)
    request = asyncio.create_task(client.post(route.path, json=route.body(stream)))
    await asyncio.wait_for(fake.arrived.wait(), 5)
    request.cancel()
    await asyncio.wait_for(fake.cancelled.wait(), 1)


# --- connections ---------------------------------------------------------------------------------


async def test_a_stream_read_to_its_last_event_leaves_the_connection_reusable(
    make_raw: MakeRaw,
) -> None:
    """Translated streams stop at the terminal event, before the body's closing chunk arrives."""
    body = encoded(ROUTES[0].stream_parts())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(sse_head(b"Transfer-Encoding: chunked\r\n\r\n"))
            writer.write(b"%x\r\n%s\r\n" % (len(body), body))
            await writer.drain()
            await asyncio.sleep(0.02)  # pacing the upstream, not waiting for anything
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    client, upstream = await make_raw(answer, "chat")
    proxy = client.server.app[PROXY]  # type: ignore[union-attr]
    url = proxy.upstream.url("/chat/completions")
    for _ in range(3):
        async with proxy.upstream.open("POST", url, {}, b"{}", passthrough=False) as response:
            assert (await response.content.readuntil(b"data: [DONE]\n\n")).endswith(b"[DONE]\n\n")
    assert upstream.connections == 1
