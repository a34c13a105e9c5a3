"""Two diglot processes sharing one real Redis continue, fetch and delete each other's
conversations, and open each other's sealed reasoning through a shared seal key."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI, NotFoundError

from fixtures.fake_chat_upstream import FakeUpstream
from tests.redis_server import redis_server, redis_url
from tests.test_conversation_state import (
    TURN_THREE_MESSAGES,
    WEATHER_TOOL,
    deepseek,
    three_turns,
    tool_result,
)

__all__ = ["redis_server", "redis_url"]
ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0


async def start_replica(
    upstream: TestServer, store: str, tmp_path: Path, name: str, port: int
) -> tuple[asyncio.subprocess.Process, AsyncOpenAI]:
    """`python -m diglot` on its own port; returns once it tells systemd's socket it is ready."""
    notify_path = tmp_path / f"{name}.notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIGLOT_")}
    env.update(NOTIFY_SOCKET=str(notify_path), DIGLOT_SEAL_KEY="shared replica secret")
    log = (tmp_path / f"{name}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "diglot", "--upstream", str(upstream.make_url("/v1"))),
        *("--upstream-api", "chat", "--port", str(port), "--store", store),
        *("--log-format", "json"),
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    loop = asyncio.get_running_loop()
    try:
        while b"READY=1" not in await asyncio.wait_for(loop.sock_recv(notify, 4096), WAIT):
            pass
    finally:
        notify.close()
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-alice", max_retries=0)
    return process, client


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def replicas(
    fake_server: TestServer, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[AsyncOpenAI, AsyncOpenAI]]:
    started: list[tuple[asyncio.subprocess.Process, AsyncOpenAI]] = []
    try:
        for name in ("first", "second"):
            started.append(await start_replica(fake_server, redis_url, tmp_path, name, _port()))
        yield started[0][1], started[1][1]
    finally:
        for process, client in started:
            await client.close()
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), WAIT)


async def test_replicas_continue_each_others_conversations(
    replicas: tuple[AsyncOpenAI, AsyncOpenAI], fake: FakeUpstream
) -> None:
    first, second = replicas
    messages, last_id = await three_turns(first, second, fake)
    assert messages == TURN_THREE_MESSAGES
    assert (await second.responses.retrieve(last_id)).output_text == "Rain is likely."
    items = await first.responses.input_items.list(last_id, order="asc")
    assert [item.type for item in items.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
    ]
    await second.responses.delete(last_id)
    with pytest.raises(NotFoundError):
        await first.responses.retrieve(last_id)


async def test_replicas_open_each_others_sealed_reasoning(
    replicas: tuple[AsyncOpenAI, AsyncOpenAI], fake: FakeUpstream
) -> None:
    fake.responder = deepseek
    first, second = replicas
    stateless: Any = {"store": False, "include": ["reasoning.encrypted_content"]}
    tools: Any = [WEATHER_TOOL]
    made = await first.responses.create(model="m", input="Go", tools=tools, **stateless)
    reasoning, call = (item.model_dump(exclude_none=True) for item in made.output)
    opaque = {key: reasoning[key] for key in ("type", "id", "encrypted_content")}
    opaque["summary"] = []  # only the sealed blob can give the backend its reasoning back
    replay: Any = [{"role": "user", "content": "Go"}, opaque, call, tool_result(0)]
    await second.responses.create(model="m", input=replay, tools=tools, **stateless)
    assert [m.get("reasoning_content") for m in fake.last.json()["messages"]] == [
        None,
        "Thought 0.",
        None,
    ]
