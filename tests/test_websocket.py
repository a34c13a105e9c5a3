"""WebSocket mode (`GET /v1/responses` upgraded) in front of a chat-only upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from diglot.proxy import websocket
from diglot.proxy.app import create_app
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Hang,
    Received,
    Reply,
    Script,
    StreamReply,
    completion,
    text_chunks,
    tool_call_chunks,
)
from fixtures.fake_responses_upstream import (
    message_item,
    responses_stream,
    stream_events,
)
from fixtures.fake_responses_upstream import response as upstream_response
from tests.conftest import proxy_config
from tests.validate import assert_valid_socket_event, assert_valid_stream

if TYPE_CHECKING:
    from tests.conftest import MakeServer

_TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}
KEY = "sk-socket"


@pytest.fixture
async def server(make_proxy_server: MakeServer) -> TestServer:
    return await make_proxy_server("chat")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def connect(
    session: aiohttp.ClientSession, server: TestServer, key: str = KEY, **options: Any
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(
        server.make_url("/v1/responses"), headers={"Authorization": f"Bearer {key}"}, **options
    )


def create(text: str | list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"type": "response.create", "model": "m", "input": text, **fields}


async def frames_until_end(
    ws: aiohttp.ClientWebSocketResponse,
    lane: str | None = None,
    others: dict[str | None, list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """The frames of one turn (of `lane`), through its terminal event; each one validated.

    Frames of other lanes are put in `others`, whose frames of `lane` are taken first.
    """
    others = {} if others is None else others
    frames = others.pop(lane, [])
    while not frames or frames[-1]["type"] not in _TERMINAL:
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        frame = orjson.loads(message.data)
        assert_valid_socket_event(frame)
        if frame.get("stream_id") == lane:
            frames.append(frame)
        else:
            others.setdefault(frame.get("stream_id"), []).append(frame)
    return frames


async def turn(ws: aiohttp.ClientWebSocketResponse, event: dict[str, Any]) -> list[dict[str, Any]]:
    await ws.send_json(event)
    return await frames_until_end(ws, event.get("stream_id"))


async def test_a_turn_streams_the_events_of_an_http_stream(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hel", "lo")))
    ws = await connect(session, server)
    frames = await turn(ws, create("Hi"))
    response = assert_valid_stream(frames)
    assert [f["type"] for f in frames] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert response["output"][0]["content"][0]["text"] == "Hello"
    assert fake.last.json()["stream"] is True
    assert fake.last.json()["messages"] == [{"role": "user", "content": "Hi"}]
    fake.script(StreamReply(text_chunks("again")))
    second = await turn(ws, create("Once more"))
    assert second[0]["sequence_number"] == 0  # numbered per response
    assert second[-1]["response"]["output"][0]["content"][0]["text"] == "again"
    await ws.close()


async def test_store_false_is_continued_on_its_connection_and_nowhere_else(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Paris")), StreamReply(text_chunks("Lyon")))
    ws = await connect(session, server)
    first = (await turn(ws, create("Capital?", store=False)))[-1]["response"]
    assert first["store"] is False
    second = await turn(ws, create("Second city?", store=False, previous_response_id=first["id"]))
    assert second[-1]["type"] == "response.completed"
    assert fake.last.json()["messages"] == [
        {"role": "user", "content": "Capital?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Second city?"},
    ]
    other = await connect(session, server)
    refused = await turn(other, create("Go on", previous_response_id=first["id"]))
    assert refused == [
        {
            "type": "error",
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "code": "previous_response_not_found",
                "message": f"Previous response with id '{first['id']}' not found.",
                "param": "previous_response_id",
            },
        }
    ]
    fake.script(StreamReply(text_chunks("fresh")))
    assert (await turn(other, create("Start over")))[-1]["type"] == "response.completed"
    await ws.close()
    await other.close()


async def test_stored_responses_are_found_from_another_connection(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("kept")), StreamReply(text_chunks("more")))
    ws = await connect(session, server)
    first = (await turn(ws, create("Remember")))[-1]["response"]
    await ws.close()
    other = await connect(session, server)
    frames = await turn(other, create("And?", previous_response_id=first["id"]))
    assert frames[-1]["type"] == "response.completed"
    assert fake.last.json()["messages"][1] == {"role": "assistant", "content": "kept"}
    await other.close()


async def test_a_failed_continuation_forgets_the_response_it_continued(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(tool_call_chunks(("call_1", "lookup", "{}"))))
    ws = await connect(session, server)
    first = (await turn(ws, create("Look it up", store=False)))[-1]["response"]
    bad_output = {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}
    refusal = {"error": {"message": "unknown tool call", "type": "invalid_request_error"}}
    fake.script(Reply(refusal, status=400))
    failed = await turn(ws, create([bad_output], store=False, previous_response_id=first["id"]))
    assert failed[-1]["type"] == "error" and failed[-1]["status"] == 400
    retried = await turn(ws, create([bad_output], store=False, previous_response_id=first["id"]))
    assert retried[-1]["error"]["code"] == "previous_response_not_found"


async def test_generate_false_prepares_a_turn_without_asking_the_upstream(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    ws = await connect(session, server)
    developer = [{"type": "message", "role": "developer", "content": "Be brief."}]
    frames = await turn(ws, create(developer, store=False, generate=False))
    assert [f["type"] for f in frames] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    warmed = frames[-1]["response"]
    assert warmed["output"] == [] and warmed["status"] == "completed"
    assert fake.received == []
    fake.script(StreamReply(text_chunks("ok")))
    await turn(ws, create("Hi", store=False, previous_response_id=warmed["id"]))
    assert fake.last.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


async def test_lanes_run_side_by_side_each_tagged_and_in_order(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    hold = asyncio.Event()
    fake.script(
        StreamReply(text_chunks("slow"), hold=hold, hold_after=1),
        StreamReply(text_chunks("quick")),
    )
    ws = await connect(session, server)
    await ws.send_json(create("first", stream_id="a"))
    await fake.arrived.wait()
    await ws.send_json(create("second", stream_id="b"))
    others: dict[str | None, list[dict[str, Any]]] = {}
    quick = await frames_until_end(ws, "b", others)
    assert quick[-1]["response"]["output"][0]["content"][0]["text"] == "quick"
    assert {f["stream_id"] for f in quick} == {"b"}
    hold.set()
    slow = await frames_until_end(ws, "a", others)
    assert {f["stream_id"] for f in slow} == {"a"}
    assert slow[-1]["response"]["output"][0]["content"][0]["text"] == "slow"
    assert [f["sequence_number"] for f in slow] == list(range(len(slow)))


async def test_a_client_that_leaves_mid_turn_cancels_the_upstream_request(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(Hang())
    ws = await connect(session, server)
    await ws.send_json(create("Wait"))
    await fake.arrived.wait()
    await ws.close()
    await asyncio.wait_for(fake.cancelled.wait(), 10)


@pytest.mark.parametrize(
    ("frame", "param", "code", "message"),
    [
        ("not json", None, "invalid_json", "The frame is not valid JSON."),
        ("[1]", None, "invalid_frame", "The frame must be a JSON object."),
        (
            '{"type": "response.cancel"}',
            "type",
            "unknown_event",
            "Unknown event type 'response.cancel': expected 'response.create'.",
        ),
        (
            '{"type": "response.create", "model": "m", "input": "x", "background": true}',
            "background",
            "unsupported_parameter",
            "Background responses are not available over WebSocket; use POST /v1/responses.",
        ),
        (
            '{"type": "response.create", "model": "m", "input": "x", "generate": "no"}',
            "generate",
            "invalid_value",
            "Invalid 'generate': expected a boolean.",
        ),
    ],
)
async def test_a_frame_that_cannot_be_served_gets_an_error_and_the_connection_goes_on(
    server: TestServer,
    session: aiohttp.ClientSession,
    fake: FakeUpstream,
    frame: str,
    param: str | None,
    code: str | None,
    message: str,
) -> None:
    ws = await connect(session, server)
    await ws.send_str(frame)
    error = orjson.loads((await ws.receive(timeout=10)).data)
    assert error == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
        },
    }
    fake.script(StreamReply(text_chunks("fine")))
    assert (await turn(ws, create("Hi")))[-1]["type"] == "response.completed"


async def test_the_handshake_checks_the_client_key(
    make_proxy_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_proxy_server("chat", client_api_keys=(KEY,))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(session, server, key="sk-wrong")
    assert refused.value.status == 401
    ws = await connect(session, server)
    await ws.close()


async def test_a_plain_get_is_not_allowed(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(server.make_url("/v1/responses")) as answer:
        assert answer.status == 405
        assert answer.headers["Allow"] == "POST"
        body = await answer.json()
    assert body["error"]["message"] == "Method GET is not allowed on /v1/responses"


async def test_compressed_frames_are_taken(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("small")))
    ws = await connect(session, server, compress=15)
    assert ws.compress == 15  # permessage-deflate was agreed
    assert (await turn(ws, create("Hi " * 1000)))[-1]["type"] == "response.completed"


async def test_a_frame_over_the_body_limit_closes_the_connection(
    make_proxy_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_proxy_server("chat", max_body_bytes=1024)
    ws = await connect(session, server)
    await ws.send_json(create("x" * 4096))
    closing = await ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_a_connection_closes_itself_at_the_end_of_its_lifetime(
    server: TestServer,
    session: aiohttp.ClientSession,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(websocket, "LIFETIME", 0.05)
    ws = await connect(session, server)
    closing = await ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == websocket.CLOSE_LIFETIME


async def test_each_turn_is_a_request_in_the_log_and_the_metrics(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("one")), StreamReply(text_chunks("two")))
    ws = await connect(session, server)
    with capture_logs() as logs:
        await turn(ws, create("a"))
        await turn(ws, create("b"))
    lines = [line for line in logs if line["event"] == "request"]
    assert [(line["method"], line["transport"], line["status"]) for line in lines] == [
        ("WS", "websocket", 200),
        ("WS", "websocket", 200),
    ]
    async with session.get(server.make_url("/metrics")) as scraped:
        text = await scraped.text()
    assert "diglot_active_websockets 1.0" in text
    assert (
        'diglot_requests_total{direction="responses->chat",route="/v1/responses (websocket)",'
        'status="200",transport="websocket"} 2.0'
    ) in text
    await ws.close()


async def test_the_openai_sdk_runs_turns_over_its_websocket_connection(
    server: TestServer, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hello", " there")), StreamReply(text_chunks("Bye")))
    client = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=KEY, max_retries=0)
    async with client.responses.connect() as connection:
        await connection.send({"type": "response.create", "model": "m", "input": "Hi"})
        first = await _until_done(connection)
        await connection.send(
            {
                "type": "response.create",
                "model": "m",
                "input": "Bye?",
                "store": False,
                "previous_response_id": first.id,
            }
        )
        second = await _until_done(connection)
    assert first.output_text == "Hello there"
    assert second.output_text == "Bye"
    assert fake.last.json()["messages"][1] == {"role": "assistant", "content": "Hello there"}
    await client.close()


async def _until_done(connection: Any) -> Any:
    async for event in connection:
        if event.type == "response.completed":
            return event.response
        assert event.type not in ("error", "response.failed"), event


async def test_a_whole_answer_upstream_is_not_used_for_a_socket_turn(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.script(Reply(completion("whole")))
    ws = await connect(session, server)
    frames = await turn(ws, create("Hi"))
    assert frames[-1]["type"] == "error"
    assert frames[-1]["status"] == 502


async def test_in_front_of_a_responses_upstream_each_turn_is_relayed_as_an_http_stream(
    make_proxy_server: MakeServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    final = upstream_response(message_item("Relayed."))
    no_socket = {"error": {"message": "Method Not Allowed", "type": "invalid_request_error"}}
    fake.script(Reply(no_socket, status=405), responses_stream(final))
    server = await make_proxy_server("responses")
    ws = await connect(session, server)
    assert (fake.last.method, fake.last.path) == ("GET", "/v1/responses")  # tried its socket
    frames = await turn(ws, create("Hi", stream_id="lane"))
    expected = [
        {**event, "sequence_number": number, "stream_id": "lane"}
        for number, event in enumerate(stream_events(final))
    ]
    assert frames == expected
    assert fake.last.path == "/v1/responses"
    assert fake.last.json() == {"model": "m", "input": "Hi", "stream": True}
    assert fake.last.headers["Authorization"] == f"Bearer {KEY}"
    assert not [name for name in fake.last.headers if name.lower().startswith("sec-websocket")]
    refusal = {"error": {"message": "no", "type": "invalid_request_error", "param": None,
                         "code": "nope"}}  # fmt: skip
    fake.script(Reply(refusal, status=400))
    assert await turn(ws, create("Again")) == [
        {"type": "error", "status": 400, "error": refusal["error"]}
    ]
    refused = await turn(ws, create("Warm up", generate=False))
    assert refused[-1]["error"]["param"] == "generate"
    assert len(fake.received) == 3


def _tool_turns(received: Received) -> Script:
    """Asks for one tool call per turn; every request is answered the same way."""
    calls = sum(1 for message in received.json()["messages"] if message["role"] == "tool")
    return StreamReply(tool_call_chunks((f"call_{calls}", "step", "{}")))


async def test_a_tool_session_over_one_websocket_sends_upstream_what_http_sends(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    fake.responder = _tool_turns
    first = "Work through 20 steps."

    async def over_http() -> None:
        previous, given = None, first
        for _ in range(20):
            body = {"model": "m", "input": given, "stream": True, **previous_of(previous)}
            async with session.post(server.make_url("/v1/responses"), json=body) as answer:
                previous = sse_events(await answer.read())[-1]["response"]
            given = [tool_output(previous)]

    async def over_socket() -> None:
        ws = await connect(session, server)
        previous, given = None, first
        for _ in range(20):
            frames = await turn(ws, create(given, store=False, **previous_of(previous)))
            previous = frames[-1]["response"]
            given = [tool_output(previous)]
        await ws.close()

    await over_http()
    http_bodies = [r.body for r in fake.received]
    fake.received.clear()
    await over_socket()
    assert [r.body for r in fake.received] == http_bodies
    assert len(http_bodies) == 20


def previous_of(response: dict[str, Any] | None) -> dict[str, Any]:
    return {} if response is None else {"previous_response_id": response["id"]}


def tool_output(response: dict[str, Any]) -> dict[str, Any]:
    call = response["output"][-1]
    return {"type": "function_call_output", "call_id": call["call_id"], "output": "done"}


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    lines = raw.decode().splitlines()
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]


class SocketUpstream:
    """A Responses upstream with a WebSocket of its own: each turn answered with `final`'s
    events, each frame it receives kept."""

    def __init__(self, final: dict[str, Any]) -> None:
        self.final = final
        self.frames: list[str] = []
        self.headers: list[Mapping[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/responses", self.serve)
        return app

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        self.headers.append(request.headers)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            self.frames.append(message.data)
            lane = orjson.loads(message.data).get("stream_id")
            for number, event in enumerate(stream_events(self.final)):
                tag = {} if lane is None else {"stream_id": lane}
                await ws.send_str(
                    orjson.dumps({**event, "sequence_number": number, **tag}).decode()
                )
        return ws


async def test_in_front_of_a_responses_upstream_with_a_websocket_frames_are_relayed_untouched(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    final = upstream_response(message_item("From the upstream's socket."))
    upstream = SocketUpstream(final)
    upstream_server = await aiohttp_server(upstream.app())
    config = proxy_config(str(upstream_server.make_url("/v1")), "responses")
    server = await aiohttp_server(create_app(config))
    ws = await connect(session, server)
    sent = '{"type": "response.create", "model": "m",  "input": "Hi", "stream_id": "x"}'
    with capture_logs() as logs:
        await ws.send_str(sent)
        frames = await frames_until_end(ws, "x")
        await ws.close()
    assert frames == [
        {**event, "sequence_number": number, "stream_id": "x"}
        for number, event in enumerate(stream_events(final))
    ]
    assert upstream.frames == [sent]  # byte for byte
    assert upstream.headers[0]["Authorization"] == f"Bearer {KEY}"
    lines = [line for line in logs if line["event"] == "request"]
    assert [(line["direction"], line["transport"], line["status"]) for line in lines] == [
        ("passthrough", "websocket", 200)
    ]
