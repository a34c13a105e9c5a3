"""Limits: nesting depth, input items, concurrent upstream requests, the idle-stream timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest

from diglot.proxy.cli import serve_parser
from diglot.proxy.config import Config, ConfigError, load_config
from diglot.proxy.limits import Overloaded, UpstreamSlots
from diglot.proxy.state import PROXY
from diglot.proxy.upstream import IdleWatch
from fixtures.fake_chat_upstream import FakeUpstream, Hang, Reply, StreamReply, chunk, completion
from tests.conftest import MakeProxy

BASE = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}
DEEP = 100_000
# (route, upstream API): translated both ways, and passed through both ways.
ROUTES = [
    ("/v1/responses", "chat"),
    ("/v1/responses", "responses"),
    ("/v1/chat/completions", "chat"),
    ("/v1/chat/completions", "responses"),
]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def body_for(route: str, items: bytes) -> bytes:
    field = b"input" if route == "/v1/responses" else b"messages"
    return b'{"model": "m", "' + field + b'": ' + items + b"}"


@pytest.mark.parametrize(("route", "api"), ROUTES)
async def test_a_body_nested_100000_deep_is_a_400(
    make_proxy: MakeProxy, fake: FakeUpstream, route: str, api: str
) -> None:
    client = await make_proxy(api)
    resp = await client.post(route, data=body_for(route, nested(DEEP)))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"
    assert fake.received == []


@pytest.mark.parametrize(("route", "api"), ROUTES)
async def test_deep_nesting_inside_an_unknown_field_is_a_400_too(
    make_proxy: MakeProxy, fake: FakeUpstream, route: str, api: str
) -> None:
    client = await make_proxy(api)
    raw = body_for(route, b"[]")[:-1] + b', "x": ' + nested(DEEP) + b"}"
    resp = await client.post(route, data=raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"
    assert fake.received == []


def messages(count: int) -> bytes:
    return orjson.dumps([{"role": "user", "content": "hi"}] * count)


@pytest.mark.parametrize(("route", "api"), ROUTES)
async def test_too_many_input_items_is_a_400_naming_the_field(
    make_proxy: MakeProxy, fake: FakeUpstream, route: str, api: str
) -> None:
    client = await make_proxy(api, max_input_items=3)
    resp = await client.post(route, data=body_for(route, messages(4)))
    assert resp.status == 400
    param = "input" if route == "/v1/responses" else "messages"
    assert await resp.json() == {
        "error": {
            "message": f"Invalid '{param}': array too long. Expected an array with maximum "
            "length 3, but got an array with length 4 instead.",
            "type": "invalid_request_error",
            "param": param,
            "code": "array_above_max_length",
        }
    }
    assert fake.received == []


async def test_input_items_at_the_limit_pass(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("ok")))
    client = await make_proxy(max_input_items=3)
    resp = await client.post("/v1/responses", data=body_for("/v1/responses", messages(3)))
    assert resp.status == 200
    assert len(fake.last.json()["messages"]) == 3


async def test_excess_requests_wait_then_get_429_with_retry_after(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Hang())
    client = await make_proxy(max_upstream_requests=1, upstream_queue_timeout=0.05)
    first = asyncio.create_task(client.post("/v1/responses", json={"model": "m", "input": "a"}))
    await fake.arrived.wait()
    resp = await client.post("/v1/responses", json={"model": "m", "input": "b"})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {
        "error": {
            "message": "Too many concurrent requests; please retry after a short wait.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert len(fake.received) == 1
    first.cancel()


async def test_a_queued_request_goes_up_when_a_stream_frees_its_slot(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    release = asyncio.Event()
    fake.script(
        StreamReply(
            [chunk({"role": "assistant", "content": "a"}), chunk({}, "stop")],
            hold=release,
            hold_after=1,
        ),
        Reply(completion("b")),
    )
    client = await make_proxy(max_upstream_requests=1, upstream_queue_timeout=60)
    stream = await client.post("/v1/responses", json={"model": "m", "input": "a", "stream": True})
    assert b"response.output_text.delta" in await stream.content.readuntil(b"delta")
    second = asyncio.create_task(client.post("/v1/responses", json={"model": "m", "input": "b"}))
    slots = client.app[PROXY].upstream.slots
    await asyncio.wait_for(until(lambda: slots.waiting == 1), 10)
    assert len(fake.received) == 1  # queued, not sent
    release.set()
    resp = await second
    assert resp.status == 200
    assert (await resp.json())["output"][0]["content"][0]["text"] == "b"
    assert b"response.completed" in await stream.read()
    assert slots.waiting == 0


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until the condition holds (the caller bounds it with a timeout)."""
    while not condition():
        await asyncio.sleep(0)


async def test_slots_refuse_only_after_the_whole_wait() -> None:
    slots = UpstreamSlots(1, 0.01)
    await slots.acquire()
    with pytest.raises(Overloaded) as caught:
        await slots.acquire()
    assert (caught.value.status, caught.value.retry_after, slots.waiting) == (429, "1", 0)
    slots.release()
    await asyncio.wait_for(slots.acquire(), 1)  # freed again


async def test_a_silent_stream_fails_after_the_idle_timeout(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    never = asyncio.Event()
    fake.script(
        StreamReply([chunk({"role": "assistant", "content": "a"})], hold=never, hold_after=1)
    )
    client = await make_proxy(read_timeout=60, upstream_idle_timeout=0.2)
    resp = await client.post("/v1/responses", json={"model": "m", "input": "a", "stream": True})
    text = (await resp.read()).decode()
    events = [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "response.failed"
    assert "stopped sending" in events[-1]["response"]["error"]["message"]


def test_new_setting_names_and_their_defaults() -> None:
    config = load_config(BASE, {})
    assert (config.connect_timeout, config.read_timeout, config.upstream_idle_timeout) == (
        10.0,
        600.0,
        600.0,
    )
    assert (config.max_input_items, config.max_upstream_requests) == (20_000, 512)
    assert (config.upstream_queue_timeout, config.drain_timeout) == (10.0, 30.0)
    assert config.max_body_bytes == 50 * 1024 * 1024
    assert config.client_api_keys == () and config.client_api_keys_file is None


def test_upstream_timeouts_by_new_and_old_names() -> None:
    cli = {**BASE, "upstream_read_timeout": "5", "connect_timeout": "3"}
    env = {"DIGLOT_UPSTREAM_CONNECT_TIMEOUT": "4", "DIGLOT_READ_TIMEOUT": "9"}
    config = load_config(cli, env)
    assert (config.read_timeout, config.connect_timeout) == (5.0, 3.0)  # CLI over env
    config = load_config(BASE, {**env, "DIGLOT_UPSTREAM_READ_TIMEOUT": "8"})
    assert (config.read_timeout, config.connect_timeout) == (8.0, 4.0)  # the newer name wins


def test_upstream_timeouts_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "diglot.toml"
    path.write_text(
        'upstream = "http://h:1/v1"\nupstream_api = "chat"\nread_timeout = 1\n'
        "upstream-read-timeout = 2\nupstream_idle_timeout = 3\n"
    )
    config = load_config({"config": str(path)}, {})
    assert (config.read_timeout, config.upstream_idle_timeout) == (2.0, 3.0)


def test_client_keys_from_each_source() -> None:
    assert load_config({**BASE, "client_api_keys": ["a", "b"]}, {}).client_api_keys == ("a", "b")
    env = {"DIGLOT_CLIENT_API_KEYS": "x, y"}
    assert load_config(BASE, env).client_api_keys == ("x", "y")


def test_a_missing_keys_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_api_keys_file: cannot read"):
        load_config({**BASE, "client_api_keys_file": f"{tmp_path}/none"}, {})


def test_config_is_still_buildable_directly() -> None:
    assert Config(upstream="http://h/v1", upstream_api="chat").drain_timeout == 30.0


def test_command_line_names_of_the_new_settings() -> None:
    args = serve_parser().parse_args(
        [
            *("--upstream", "http://h/v1", "--upstream-api", "chat"),
            *("--client-api-key", "a", "--client-api-key", "b"),
            *("--upstream-connect-timeout", "2", "--upstream-read-timeout", "3"),
            *("--upstream-idle-timeout", "4", "--max-input-items", "5"),
            *("--max-upstream-requests", "6", "--upstream-queue-timeout", "7"),
            *("--drain-timeout", "8", "--read-timeout", "99"),
        ]
    )
    config = load_config(vars(args), {})
    assert config.client_api_keys == ("a", "b")
    assert (config.connect_timeout, config.read_timeout, config.upstream_idle_timeout) == (2, 3, 4)
    assert (config.max_input_items, config.max_upstream_requests) == (5, 6)
    assert (config.upstream_queue_timeout, config.drain_timeout) == (7, 8)


async def test_a_waiter_that_gives_up_leaves_the_slot_to_the_next() -> None:
    slots = UpstreamSlots(1, 60)
    await slots.acquire()
    gave_up = asyncio.create_task(slots.acquire())
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.wait_for(until(lambda: slots.waiting == 2), 10)
    gave_up.cancel()
    slots.release()
    await asyncio.wait_for(waiting, 10)  # handed the slot, past the one that left
    assert gave_up.cancelled() and slots.waiting == 0
    slots.release()
    await asyncio.wait_for(slots.acquire(), 1)  # and freed once that one is done


class _Clock:
    """An event loop's clock and timers, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.call_at(self.now + delay, callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        self.due.append((when, callback))
        return SimpleNamespace(cancel=lambda: None)

    def run_until(self, moment: float) -> None:
        while self.due and min(when for when, _ in self.due) <= moment:
            self.due.sort(key=lambda timer: timer[0])
            when, callback = self.due.pop(0)
            self.now = when
            callback()
        self.now = moment


class _Body:
    def __init__(self) -> None:
        self.total_bytes = 0
        self.error: BaseException | None = None

    def is_eof(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self.error

    def set_exception(self, error: BaseException) -> None:
        self.error = error


def test_a_stream_is_cut_once_silent_for_the_idle_timeout_and_never_sooner() -> None:
    clock, body, protocol = _Clock(), _Body(), SimpleNamespace(set_exception=lambda error: None)
    upstream = SimpleNamespace(content=body)
    IdleWatch(clock, upstream, protocol, 1.0)  # type: ignore[arg-type]
    for moment in (0.9, 1.8, 2.7):  # an event every 0.9 s: quiet, but never for 1 s
        clock.run_until(moment)
        body.total_bytes += 10
    clock.run_until(2.7 + 0.99)
    assert body.error is None
    clock.run_until(2.7 + 1.25)  # noticed at most a quarter of the timeout late
    assert isinstance(body.error, aiohttp.ServerTimeoutError)
    assert clock.due == []  # and no longer watched
