"""A real `python -m diglot`: systemd's notify protocol, SIGTERM drains streams, SIGHUP reloads."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from fixtures.fake_chat_upstream import FakeUpstream, Reply, StreamReply, chunk, completion

ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("DIGLOT_", "NOTIFY_SOCKET", "WATCHDOG_"))  # nothing of our own manager
}
WAIT = 30  # seconds: a bound for each wait, never a synchronisation


class Notifications:
    """The datagram socket systemd would listen on, as a test sees it."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.seen: list[str] = []

    async def next(self) -> str:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 4096), WAIT)
        message = data.decode()
        self.seen.append(message)
        return message

    async def until(self, state: str) -> str:
        """The first datagram carrying `state` (watchdog pings in between are kept in `seen`)."""
        while True:
            message = await self.next()
            if state in message.split("\n"):
                return message


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    """An abstract-namespace socket, named as systemd names it: with a leading @."""
    name = f"diglot-test-{secrets.token_hex(8)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    yield Notifications(sock, "@" + name)
    sock.close()


class Diglot:
    """diglot as a child process in front of the test's fake upstream."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log: list[dict[str, Any]] = []

    async def log_event(self, event: str) -> dict[str, Any]:
        """Read diglot's JSON log lines until one with this event."""
        assert self.process.stderr is not None
        while True:
            line = await asyncio.wait_for(self.process.stderr.readline(), WAIT)
            assert line, f"diglot exited before logging {event}: {self.log}"
            record = orjson.loads(line)
            self.log.append(record)
            if record.get("event") == event:
                return record


async def start(
    upstream: TestServer, port: int, notify: str | None, *args: str, **env: str
) -> Diglot:
    notify_env = {"NOTIFY_SOCKET": notify} if notify else {}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "diglot",
        "--upstream",
        str(upstream.make_url("/v1")),
        "--upstream-api",
        "chat",
        "--port",
        str(port),
        "--log-format",
        "json",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**ENV, "DIGLOT_STORE": "memory://", **notify_env, **env},
    )
    return Diglot(process, port)


async def stop(diglot: Diglot) -> int:
    if diglot.process.returncode is None:
        diglot.process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(diglot.process.wait(), WAIT)


STREAM = {"model": "m", "input": "hi", "stream": True}


def held_stream(release: asyncio.Event) -> StreamReply:
    return StreamReply(
        [
            chunk({"role": "assistant", "content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
        ],
        hold=release,
        hold_after=1,
    )


def events(body: bytes) -> list[dict[str, Any]]:
    lines = body.decode().splitlines()
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]


async def test_ready_watchdog_and_a_stream_that_outlives_sigterm(
    fake: FakeUpstream, fake_server: TestServer, free_port: int, notifications: Notifications
) -> None:
    release = asyncio.Event()
    fake.script(held_stream(release))
    diglot = await start(fake_server, free_port, notifications.address, WATCHDOG_USEC="200000")
    try:
        assert (await notifications.next()).split("\n")[0] == "READY=1"
        async with aiohttp.ClientSession() as session:
            async with session.get(diglot.url + "/healthz") as resp:  # listening once READY
                assert resp.status == 200
            await notifications.until("WATCHDOG=1")
            await notifications.until("WATCHDOG=1")
            async with session.post(diglot.url + "/v1/responses", json=STREAM) as resp:
                first = await resp.content.readuntil(b"response.output_text.delta")
                diglot.process.send_signal(signal.SIGTERM)
                await notifications.until("STOPPING=1")
                await diglot.log_event("draining")
                release.set()
                rest = await asyncio.wait_for(resp.read(), WAIT)
        streamed = events(first + rest)
        assert streamed[-1]["type"] == "response.completed"
        assert streamed[-1]["response"]["output"][0]["content"][0]["text"] == "Hello"
        assert await asyncio.wait_for(diglot.process.wait(), WAIT) == 0  # exits once drained
        assert "READY=1" not in "".join(notifications.seen[1:])  # said once
    finally:
        await stop(diglot)


async def test_sigterm_lets_a_websocket_turn_finish_then_says_going_away(
    fake: FakeUpstream, fake_server: TestServer, free_port: int
) -> None:
    release = asyncio.Event()
    fake.script(held_stream(release))
    diglot = await start(fake_server, free_port, None)
    try:
        await diglot.log_event("serving")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(diglot.url + "/v1/responses") as ws,
        ):
            await ws.send_json({"type": "response.create", "model": "m", "input": "hi"})
            await asyncio.wait_for(fake.arrived.wait(), WAIT)
            diglot.process.send_signal(signal.SIGTERM)
            await diglot.log_event("draining")
            release.set()
            frames = []
            while (message := await ws.receive(timeout=WAIT)).type is aiohttp.WSMsgType.TEXT:
                frames.append(orjson.loads(message.data))
            assert frames[-1]["type"] == "response.completed"
            assert frames[-1]["response"]["output"][0]["content"][0]["text"] == "Hello"
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (1001, "diglot is shutting down")
        assert await asyncio.wait_for(diglot.process.wait(), WAIT) == 0
    finally:
        await stop(diglot)


async def test_the_drain_timeout_ends_a_stream_that_never_finishes(
    fake: FakeUpstream, fake_server: TestServer, free_port: int, notifications: Notifications
) -> None:
    never = asyncio.Event()
    fake.script(held_stream(never))
    diglot = await start(fake_server, free_port, notifications.address, "--drain-timeout", "0.3")
    try:
        await notifications.until("READY=1")
        async with (
            aiohttp.ClientSession() as session,
            session.post(diglot.url + "/v1/responses", json=STREAM) as resp,
        ):
            await resp.content.readuntil(b"response.output_text.delta")
            diglot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(diglot.process.wait(), WAIT) == 0
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.read(), WAIT)
        await asyncio.wait_for(fake.cancelled.wait(), WAIT)  # the upstream request went too
    finally:
        await stop(diglot)


async def test_without_notify_socket_diglot_serves_and_stops(
    fake: FakeUpstream, fake_server: TestServer, free_port: int
) -> None:
    diglot = await start(fake_server, free_port, None)
    try:
        assert (await diglot.log_event("serving"))["url"] == diglot.url
        async with aiohttp.ClientSession() as session, session.get(diglot.url + "/healthz") as resp:
            assert resp.status == 200
        assert await stop(diglot) == 0
        assert (await diglot.log_event("stopped"))["level"] == "info"
    finally:
        await stop(diglot)


async def test_sighup_reloads_client_keys_without_dropping_a_stream(
    fake: FakeUpstream,
    fake_server: TestServer,
    free_port: int,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    fake.script(held_stream(release))
    fake.responder = lambda _: Reply(completion("ok"))
    keys = tmp_path / "keys"
    keys.write_text("old\n")
    diglot = await start(
        fake_server, free_port, notifications.address, "--client-api-keys-file", str(keys)
    )
    try:
        await notifications.until("READY=1")
        async with aiohttp.ClientSession() as session:
            old = {"Authorization": "Bearer old"}
            new = {"Authorization": "Bearer new"}
            async with session.post(
                diglot.url + "/v1/responses", json=STREAM, headers=old
            ) as stream:
                first = await stream.content.readuntil(b"response.output_text.delta")
                keys.write_text("new\n")
                diglot.process.send_signal(signal.SIGHUP)
                assert (await diglot.log_event("client_keys_reloaded"))["count"] == 1
                async with session.get(diglot.url + "/v1/models", headers=new) as resp:
                    assert resp.status == 200
                async with session.get(diglot.url + "/v1/models", headers=old) as resp:
                    assert resp.status == 401
                release.set()
                rest = await asyncio.wait_for(stream.read(), WAIT)
        assert events(first + rest)[-1]["type"] == "response.completed"
        assert diglot.process.returncode is None  # SIGHUP did not stop it
    finally:
        await stop(diglot)
