"""`responses.create(conversation=…)` in front of a chat upstream: the backend gets the
conversation's items, then the new input; the turn's input and output join the conversation
(its instructions do not), over HTTP streamed or not, over WebSocket, and in the background."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from fixtures.fake_chat_upstream import FakeUpstream, Reply, StreamReply, completion, text_chunks
from tests.validate import assert_valid_response, assert_valid_stream

if TYPE_CHECKING:
    from tests.conftest import MakeServer

KEY = "sk-alice"
QUESTION = {"type": "message", "role": "user", "content": "What is 2 + 2?"}
ANSWER = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]}
EARLIER = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture
async def server(make_proxy_server: MakeServer) -> TestServer:
    return await make_proxy_server("chat")


@pytest.fixture
async def openai(server: TestServer) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=KEY, max_retries=0)
    yield client
    await client.close()


async def items_of(openai: AsyncOpenAI, conversation_id: str) -> list[tuple[str, str, str]]:
    """Each item's type, role and text, oldest first."""
    listed = await openai.conversations.items.list(conversation_id, order="asc")
    shown = []
    for item in listed.data:
        dumped = item.to_dict()
        text = "".join(part.get("text", "") for part in dumped.get("content", []))
        shown.append((dumped["type"], dumped.get("role", ""), text))
    return shown


async def turn_over_http(openai: AsyncOpenAI, stream: bool, **body: Any) -> dict[str, Any]:
    """One create, streamed or not; its response as the client got it."""
    if not stream:
        answer = await openai.post("/responses", cast_to=object, body={"model": "m", **body})
        assert isinstance(answer, dict)
        assert_valid_response(answer)
        return answer
    events = await openai.responses.create(model="m", stream=True, **body)
    async with events:
        return assert_valid_stream([event.to_dict() async for event in events])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_turns_in_a_conversation_send_its_items_and_join_it(
    openai: AsyncOpenAI, fake: FakeUpstream, stream: bool
) -> None:
    reply = StreamReply(text_chunks("6")) if stream else Reply(completion("6"))
    later = StreamReply(text_chunks("8")) if stream else Reply(completion("8"))
    fake.script(reply, later)
    conversation = await openai.conversations.create(items=[QUESTION, ANSWER])
    first = await turn_over_http(
        openai, stream, conversation=conversation.id, instructions="Be brief.", input="And 3 + 3?"
    )
    assert first["conversation"] == {"id": conversation.id}
    assert await items_of(openai, conversation.id) == [
        ("message", "user", "What is 2 + 2?"),
        ("message", "assistant", "4"),
        ("message", "user", "And 3 + 3?"),
        ("message", "assistant", "6"),
    ]
    second = await turn_over_http(
        openai, stream, conversation={"id": conversation.id}, input="And 4 + 4?"
    )
    assert second["conversation"] == {"id": conversation.id}
    sent = [received.json()["messages"] for received in fake.received]
    assert sent == [
        [{"role": "system", "content": "Be brief."}, *EARLIER,
         {"role": "user", "content": "And 3 + 3?"}],
        [*EARLIER, {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6"},
         {"role": "user", "content": "And 4 + 4?"}],
    ]  # fmt: skip
    assert (await items_of(openai, conversation.id))[-2:] == [
        ("message", "user", "And 4 + 4?"),
        ("message", "assistant", "8"),
    ]


async def test_a_websocket_turn_takes_its_place_in_a_conversation(
    openai: AsyncOpenAI, fake: FakeUpstream, server: TestServer
) -> None:
    fake.script(StreamReply(text_chunks("6")))
    conversation = await openai.conversations.create(items=[QUESTION, ANSWER])
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            server.make_url("/v1/responses"), headers={"Authorization": f"Bearer {KEY}"}
        ) as ws,
    ):
        create = {"type": "response.create", "model": "m", "input": "And 3 + 3?"}
        await ws.send_json({**create, "conversation": conversation.id})
        frames = []
        while not frames or frames[-1]["type"] != "response.completed":
            frames.append(orjson.loads((await ws.receive(timeout=10)).data))
    assert assert_valid_stream(frames)["conversation"] == {"id": conversation.id}
    assert fake.last.json()["messages"] == [*EARLIER, {"role": "user", "content": "And 3 + 3?"}]
    assert (await items_of(openai, conversation.id))[-2:] == [
        ("message", "user", "And 3 + 3?"),
        ("message", "assistant", "6"),
    ]


async def test_a_background_turn_joins_its_conversation_once_it_ends(
    openai: AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("6")))
    conversation = await openai.conversations.create(items=[QUESTION, ANSWER])
    stream = await openai.responses.create(
        model="m", input="And 3 + 3?", conversation=conversation.id, background=True, stream=True
    )
    async with stream:
        final = assert_valid_stream([event.to_dict() async for event in stream])
    assert (final["background"], final["conversation"]) == (True, {"id": conversation.id})
    assert fake.last.json()["messages"] == [*EARLIER, {"role": "user", "content": "And 3 + 3?"}]
    assert await items_of(openai, conversation.id) == [
        ("message", "user", "What is 2 + 2?"),
        ("message", "assistant", "4"),
        ("message", "user", "And 3 + 3?"),
        ("message", "assistant", "6"),
    ]
