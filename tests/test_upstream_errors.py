"""Failures: upstream errors in OpenAI's shape, 502/504, aiohttp's own 404/405, broken streams."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from diglot.proxy.app import create_app, observed
from diglot.proxy.config import Config
from diglot.proxy.metrics import Metrics
from diglot.translators.errors import upstream_error_body
from fixtures.fake_chat_upstream import FakeUpstream, Hang, Reply, StreamReply, chunk
from fixtures.fake_chat_upstream import text_chunks as chat_chunks

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

CHAT_BODY = b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}'
RESPONSES_BODY = b'{"model":"fake-model","input":"hi"}'
RESPONSES_STREAM = b'{"model":"fake-model","input":"hi","stream":true}'


def error(message: str, kind: str, param: str | None = None, code: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            400,
            error("bad temperature", "invalid_request_error", "temperature", "invalid_value"),
            error("bad temperature", "invalid_request_error", "temperature", "invalid_value"),
        ),
        (  # llama.cpp
            400,
            {
                "error": {
                    "code": 400,
                    "message": "context too long",
                    "type": "invalid_request_error",
                }
            },
            error("context too long", "invalid_request_error"),
        ),
        (  # vLLM
            400,
            {"object": "error", "message": "no such model", "type": "NotFoundError", "code": 404},
            error("no such model", "NotFoundError"),
        ),
        (
            404,
            {"error": "model 'x' not found"},
            error("model 'x' not found", "invalid_request_error"),
        ),
        (
            422,
            {"detail": [{"loc": ["body", "model"], "msg": "field required"}, "other"]},
            error("field required; other", "invalid_request_error"),
        ),
        (401, {"detail": "bad key"}, error("bad key", "authentication_error")),
        (503, b"  Service Unavailable\n", error("Service Unavailable", "server_error")),
        (502, "", error("The upstream returned HTTP 502.", "server_error")),
        (429, [1, 2], error("The upstream returned HTTP 429.", "rate_limit_error")),
        (418, None, error("The upstream returned HTTP 418.", "api_error")),
    ],
)
def test_upstream_error_body_normalises_every_backend(
    status: int, payload: object, expected: Any
) -> None:
    assert upstream_error_body(status, payload) == expected


def test_upstream_error_message_is_bounded() -> None:
    body = upstream_error_body(500, "x" * 10_000)
    assert len(body["error"]["message"]) == 2000


@pytest.mark.parametrize(
    ("api", "path", "body"),
    [
        ("chat", "/v1/chat/completions", CHAT_BODY),
        ("responses", "/v1/responses", RESPONSES_BODY),
        ("chat", "/v1/responses", RESPONSES_BODY),
        ("chat", "/v1/responses", RESPONSES_STREAM),
    ],
)
async def test_upstream_errors_keep_status_and_rate_limit_headers(
    make_proxy: MakeProxy, fake: FakeUpstream, api: str, path: str, body: bytes
) -> None:
    headers = {
        "Retry-After": "7",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-tokens": "1s",
        "X-Internal": "secret",
    }
    fake.script(Reply({"error": "slow down"}, status=429, headers=headers))
    client = await make_proxy(api)
    resp = await client.post(path, data=body, headers={"X-Request-Id": "rl-1"})
    assert resp.status == 429
    assert await resp.json() == error("slow down", "rate_limit_error")
    assert resp.headers["Retry-After"] == "7"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-tokens"] == "1s"
    assert resp.headers["X-Request-Id"] == "rl-1"
    assert "X-Internal" not in resp.headers


@pytest.mark.parametrize(
    ("status", "reply", "expected"),
    [
        (500, Reply(b"<html>oops</html>", 500, content_type="text/html"), "<html>oops</html>"),
        (503, Reply({"error": {"message": "overloaded"}}, 503), "overloaded"),
    ],
)
async def test_upstream_5xx_is_passed_on_in_openai_shape(
    make_proxy: MakeProxy, fake: FakeUpstream, status: int, reply: Reply, expected: str
) -> None:
    fake.script(reply)
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", data=RESPONSES_BODY)
    assert resp.status == status
    assert await resp.json() == error(expected, "server_error")


CHAT_STREAM = b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"stream":true}'


@pytest.mark.parametrize(
    ("api", "path", "body", "relayed"),
    [
        ("chat", "/v1/chat/completions", CHAT_BODY, True),
        ("responses", "/v1/responses/resp_1", None, True),
        ("chat", "/v1/responses", RESPONSES_BODY, False),
        ("chat", "/v1/responses", RESPONSES_STREAM, False),
        ("responses", "/v1/chat/completions", CHAT_BODY, False),
        ("responses", "/v1/chat/completions", CHAT_STREAM, False),
    ],
)
async def test_an_upstream_redirect_is_relayed_in_passthrough_and_a_502_in_translation(
    make_proxy: MakeProxy,
    fake: FakeUpstream,
    api: str,
    path: str,
    body: bytes | None,
    relayed: bool,
) -> None:
    """Every route's one upstream exchange logs the upstream's status and time to answer."""
    fake.script(Reply(b"", status=302, headers={"Location": "http://elsewhere/"}))
    client = await make_proxy(api)
    with capture_logs() as logs:
        resp = await client.request(
            "GET" if body is None else "POST", path, data=body, allow_redirects=False
        )
    if relayed:
        assert (resp.status, resp.headers["Location"]) == (302, "http://elsewhere/")
    else:
        assert resp.status == 502
        assert await resp.json() == error(
            "The upstream answered HTTP 302.", "server_error", None, "bad_upstream_response"
        )
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["upstream_status"] == 302
    assert line["duration_ms"] >= line["upstream_ms"] >= 0


@pytest.mark.parametrize(
    ("api", "path", "body"),
    [
        ("chat", "/v1/chat/completions", CHAT_BODY),
        ("chat", "/v1/responses", RESPONSES_BODY),
        ("chat", "/v1/responses", RESPONSES_STREAM),
        ("responses", "/v1/models", None),
    ],
)
async def test_unreachable_upstream_is_502(
    aiohttp_client: Any, free_port: int, api: str, path: str, body: bytes | None
) -> None:
    config = Config(upstream=f"http://127.0.0.1:{free_port}/v1", upstream_api=api)  # type: ignore[arg-type]
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    resp = await client.request("GET" if body is None else "POST", path, data=body)
    assert resp.status == 502
    got = (await resp.json())["error"]
    assert (got["type"], got["code"]) == ("server_error", "upstream_unreachable")
    assert got["message"].startswith("The upstream could not be reached")


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT_BODY), ("/v1/responses", RESPONSES_BODY)],
)
async def test_upstream_timeout_is_504(
    make_proxy: MakeProxy, fake: FakeUpstream, path: str, body: bytes
) -> None:
    fake.script(Hang())
    client = await make_proxy("chat", read_timeout=0.2)
    resp = await client.post(path, data=body)
    assert resp.status == 504
    assert await resp.json() == error(
        "The upstream did not answer in time.", "server_error", None, "upstream_timeout"
    )


async def test_non_json_completion_is_502(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(b"not json"))
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", data=RESPONSES_BODY)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "bad_upstream_response"


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """Parse OpenAI framing strictly: `event:` then one `data:` line, then a blank line."""
    events = []
    for block in raw.split(b"\n\n")[:-1]:
        event_line, data_line = block.split(b"\n")
        event = orjson.loads(data_line.removeprefix(b"data: "))
        assert event_line == b"event: " + event["type"].encode()
        events.append(event)
    assert raw.endswith(b"\n\n")
    return events


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            StreamReply(chat_chunks("Hel", "lo")[:2], then="drop"),
            "The upstream connection broke mid-stream",
        ),
        (
            StreamReply([*chat_chunks("Hi")[:2], b"data: {not json\n\n"]),
            "The upstream sent a stream chunk that is not JSON.",
        ),
        (
            StreamReply([*chat_chunks("Hi")[:2], b"data: [1, 2]\n\n"]),
            "The upstream sent a stream chunk that is not an object.",
        ),
        (
            StreamReply(chat_chunks("Hi")[:2], done=False),
            "The upstream stream ended before the answer finished.",
        ),
        (
            StreamReply([chunk({"content": "x"}), {"error": {"message": "GPU on fire"}}]),
            "GPU on fire",
        ),
    ],
)
async def test_broken_upstream_stream_ends_with_response_failed(
    make_proxy: MakeProxy, fake: FakeUpstream, reply: StreamReply, message: str
) -> None:
    fake.script(reply)
    client = await make_proxy("chat")
    resp = await client.post("/v1/responses", data=RESPONSES_STREAM)
    assert resp.status == 200
    events = sse_events(await resp.read())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"].startswith(message)
    assert sum(e["type"].startswith("response.failed") for e in events) == 1


async def test_upstream_stalling_mid_stream_fails_the_response(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(chat_chunks("Hi"), hold=asyncio.Event(), hold_after=2))
    client = await make_proxy("chat", read_timeout=0.2)
    resp = await client.post("/v1/responses", data=RESPONSES_STREAM)
    events = sse_events(await resp.read())
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == (
        "The upstream stopped sending in the middle of the answer."
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "message", "code"),
    [
        ("POST", "/v1/nothing", 404, "Invalid URL (POST /v1/nothing)", "unknown_url"),
        ("GET", "/", 404, "Invalid URL (GET /)", "unknown_url"),
        ("GET", "/v1/responses", 405, "Method GET is not allowed on /v1/responses", None),
        ("DELETE", "/v1/models", 405, "Method DELETE is not allowed on /v1/models", None),
    ],
)
async def test_aiohttp_errors_come_back_in_openai_shape(
    make_proxy: MakeProxy, method: str, path: str, status: int, message: str, code: str | None
) -> None:
    client = await make_proxy("chat")
    resp = await client.request(method, path)
    assert resp.status == status
    assert await resp.json() == error(message, "invalid_request_error", None, code)


async def test_an_unexpected_exception_is_an_openai_500_without_traceback(
    aiohttp_client: Any,
) -> None:
    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("internal detail")

    app = web.Application()
    app.router.add_get("/broken", observed(broken, "/broken", None, Metrics()))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    with capture_logs() as logs:
        resp = await client.get("/broken", headers={"X-Request-Id": "boom-1"})
    assert resp.status == 500
    assert await resp.json() == error(
        "The server had an error processing your request.", "server_error"
    )
    assert resp.headers["X-Request-Id"] == "boom-1"
    assert "internal detail" not in await resp.text()
    [logged] = [entry for entry in logs if entry["event"] == "unexpected_error"]
    assert logged["request_id"] == "boom-1"
    assert logged["log_level"] == "error"
