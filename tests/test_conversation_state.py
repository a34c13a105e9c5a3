"""Conversations chained by previous_response_id through diglot over a chat-only upstream:
every store backend, two replicas on one Redis, retrieval, tenancy, and sealed reasoning."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI, NotFoundError
from openai.types.responses import ResponseItemList
from pydantic import TypeAdapter

from diglot.proxy.conversation import tenant_of
from diglot.proxy.state import PROXY
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    StreamReply,
    chunk,
    completion,
    text_chunks,
    tool_call,
    usage_chunk,
)
from tests.redis_server import redis_server, redis_url
from tests.validate import assert_valid_response, assert_valid_stream
from tests.weather import WEATHER_TOOL

if TYPE_CHECKING:
    from tests.conftest import MakeProxy, MakeServer

__all__ = ["redis_server", "redis_url"]

CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_TOOL["parameters"],
        "strict": True,
    },
}
PARIS_CALL = tool_call("call_1", "get_weather", '{"city":"Paris"}')
NOT_FOUND = {
    "message": "Previous response with id 'resp_missing' not found.",
    "type": "invalid_request_error",
    "param": "previous_response_id",
    "code": "previous_response_not_found",
}
Client = TestClient[Any, Any]


def sdk(server: TestServer, key: str = "sk-alice") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(line.removeprefix(b"data: "))
        for line in raw.split(b"\n")
        if line.startswith(b"data: ")
    ]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/responses.db"
    url: str = request.getfixturevalue("redis_url")
    return url


async def three_turns(
    first: AsyncOpenAI, second: AsyncOpenAI, fake: FakeUpstream
) -> tuple[list[dict[str, Any]], str]:
    """Tool call, tool result (streamed answer), follow-up: chained only by response ids."""
    fake.script(
        Reply(completion(None, tool_calls=[PARIS_CALL], finish_reason="tool_calls")),
        StreamReply(text_chunks("It is ", "sunny.")),
        Reply(completion("Rain is likely.")),
    )
    one = await first.responses.create(
        model="fake-model",
        instructions="Turn one rules",
        input="Weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert one.output[0].type == "function_call"
    stream = await second.responses.create(
        model="fake-model",
        instructions="Turn two rules",
        previous_response_id=one.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    events = [event.model_dump(mode="json", exclude_unset=True) async for event in stream]
    two = assert_valid_stream(events)
    assert two["previous_response_id"] == one.id
    three = await first.responses.create(
        model="fake-model",
        instructions="Turn three rules",
        previous_response_id=two["id"],
        input="And tomorrow?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert three.output_text == "Rain is likely."
    assert three.previous_response_id == two["id"]
    return fake.last.json()["messages"], three.id


TURN_THREE_MESSAGES = [
    {"role": "system", "content": "Turn three rules"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [PARIS_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "assistant", "content": "It is sunny."},
    {"role": "user", "content": "And tomorrow?"},
]


async def test_three_tool_turns_chained_by_id(
    make_proxy_server: MakeServer, fake: FakeUpstream, store_url: str
) -> None:
    server = await make_proxy_server("chat", store=store_url)
    client = sdk(server)
    messages, _ = await three_turns(client, client, fake)
    assert messages == TURN_THREE_MESSAGES
    await client.close()


async def test_two_replicas_on_one_redis_continue_each_other(
    make_proxy_server: MakeServer, fake: FakeUpstream, redis_url: str
) -> None:
    first = sdk(await make_proxy_server("chat", store=redis_url))
    second = sdk(await make_proxy_server("chat", store=redis_url))
    messages, last_id = await three_turns(first, second, fake)
    assert messages == TURN_THREE_MESSAGES
    fetched = await second.responses.retrieve(last_id)
    assert fetched.output_text == "Rain is likely."
    await second.responses.delete(last_id)
    with pytest.raises(NotFoundError):
        await first.responses.retrieve(last_id)
    await first.close()
    await second.close()


async def test_stored_input_items_without_ids_get_them_from_the_apps_mint(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    """Minted by `Proxy.new_id`: the prefix of the item's type, then the second it was made."""
    fake.script(Reply(completion("Hi!")))
    proxy = await make_proxy("chat")
    before = int(time.time())
    call = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
    body = {"model": "fake-model", "input": [{"role": "user", "content": "a"}, call, output]}
    created = await (await proxy.post("/v1/responses", json=body)).json()
    listed = await (await proxy.get(f"/v1/responses/{created['id']}/input_items?order=asc")).json()
    minted = [
        re.fullmatch(r"([a-z]+)_([0-9a-f]{8})[0-9a-f]{40}", item["id"]) for item in listed["data"]
    ]
    assert [found.group(1) if found else None for found in minted] == ["msg", "fc", "fco"]
    seconds = [int(found.group(2), 16) for found in minted if found]
    assert all(before <= second <= time.time() for second in seconds)


async def test_get_delete_and_input_items(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("Hi!")))
    proxy = await make_proxy("chat")
    auth = {"Authorization": "Bearer sk-alice"}
    body = {
        "model": "fake-model",
        "input": [
            {"role": "developer", "content": "Be kind"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"role": "user", "content": "b", "id": "msg_client"},
            {"role": "user", "content": "c", "id": "msg_client"},
        ],
    }
    created = await (await proxy.post("/v1/responses", json=body, headers=auth)).json()
    rid = created["id"]
    got = await proxy.get(f"/v1/responses/{rid}", headers=auth)
    assert got.status == 200
    stored = await got.json()
    assert stored == created
    assert_valid_response(stored)

    listed = await (await proxy.get(f"/v1/responses/{rid}/input_items", headers=auth)).json()
    TypeAdapter(ResponseItemList).validate_python(listed)
    data = listed["data"]
    assert [item.get("role") for item in data] == ["user", "user", "user", "developer"]
    assert [item["content"][0]["text"] for item in data] == ["c", "b", "a", "Be kind"]
    ids = [item["id"] for item in data]
    assert len(set(ids)) == 4 and ids[1] == "msg_client"
    assert listed["first_id"] == ids[0] and listed["last_id"] == ids[-1]
    assert listed["has_more"] is False

    page = await proxy.get(
        f"/v1/responses/{rid}/input_items", params={"limit": "2", "order": "asc"}, headers=auth
    )
    first_page = await page.json()
    assert [item["id"] for item in first_page["data"]] == ids[::-1][:2]
    assert first_page["has_more"] is True
    page = await proxy.get(
        f"/v1/responses/{rid}/input_items",
        params={"limit": "2", "order": "asc", "after": first_page["last_id"]},
        headers=auth,
    )
    second_page = await page.json()
    assert [item["id"] for item in second_page["data"]] == ids[::-1][2:]
    assert second_page["has_more"] is False
    bad = await proxy.get(f"/v1/responses/{rid}/input_items?limit=0", headers=auth)
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "limit"

    deleted = await proxy.delete(f"/v1/responses/{rid}", headers=auth)
    assert await deleted.json() == {"id": rid, "object": "response.deleted", "deleted": True}
    for method, path in (
        ("GET", f"/v1/responses/{rid}"),
        ("DELETE", f"/v1/responses/{rid}"),
        ("GET", f"/v1/responses/{rid}/input_items"),
    ):
        gone = await proxy.request(method, path, headers=auth)
        assert gone.status == 404
        assert await gone.json() == {
            "error": {
                "message": f"Response with id '{rid}' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }


async def test_string_content_is_stored_as_the_parts_diglot_answers_with(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    """A message given as a string is kept as content parts: the assistant's `output_text` like
    the ones diglot's responses hold, any other role's `input_text`."""
    fake.script(Reply(completion("Hi!")))
    proxy = await make_proxy("chat")
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "q", "id": "msg_q"},
            {"role": "assistant", "content": "a", "id": "msg_a"},
            {"role": "developer", "content": "d", "id": "msg_d"},
        ],
    }
    created = await (await proxy.post("/v1/responses", json=body)).json()
    listed = await proxy.get(f"/v1/responses/{created['id']}/input_items?order=asc")
    assert (await listed.json())["data"] == [
        {
            "id": "msg_q",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "q"}],
            "status": "completed",
        },
        {
            "id": "msg_a",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "a", "annotations": [], "logprobs": []}],
            "status": "completed",
        },
        {
            "id": "msg_d",
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "d"}],
            "status": "completed",
        },
    ]
    message = created["output"][0]
    assert message["content"][0].keys() == {"type", "text", "annotations", "logprobs"}


async def test_another_key_sees_none_of_it(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("Hi!")))
    proxy = await make_proxy("chat")
    alice, bob = {"Authorization": "Bearer sk-alice"}, {"Authorization": "Bearer sk-bob"}
    post = await proxy.post("/v1/responses", json={"model": "m", "input": "x"}, headers=alice)
    created = await post.json()
    rid, item_id = created["id"], created["output"][0]["id"]
    for method, path in (
        ("GET", f"/v1/responses/{rid}"),
        ("DELETE", f"/v1/responses/{rid}"),
        ("GET", f"/v1/responses/{rid}/input_items"),
    ):
        assert (await proxy.request(method, path, headers=bob)).status == 404
    follow = {"model": "m", "input": "y", "previous_response_id": rid}
    refused = await proxy.post("/v1/responses", json=follow, headers=bob)
    assert refused.status == 400
    assert (await refused.json())["error"]["param"] == "previous_response_id"
    reference = {"model": "m", "input": [{"type": "item_reference", "id": item_id}]}
    refused = await proxy.post("/v1/responses", json=reference, headers=bob)
    assert refused.status == 400
    assert (await refused.json())["error"]["param"] == "input[0].id"
    assert (await proxy.get(f"/v1/responses/{rid}", headers=alice)).status == 200
    assert len(fake.received) == 1


@pytest.mark.parametrize("how", ["unknown", "deleted", "expired", "store_false"])
async def test_previous_ids_that_do_not_resolve(
    make_proxy: MakeProxy, fake: FakeUpstream, how: str
) -> None:
    fake.script(Reply(completion("Hi!")))
    ttl = 1e-6 if how == "expired" else 3600.0
    proxy = await make_proxy("chat", store_ttl=ttl)
    rid = "resp_missing"
    if how != "unknown":
        first = {"model": "m", "input": "x", "store": how != "store_false"}
        made = await (await proxy.post("/v1/responses", json=first)).json()
        rid = made["id"]
        if how == "deleted":
            assert (await proxy.delete(f"/v1/responses/{rid}")).status == 200
    follow = {"model": "m", "input": "y", "previous_response_id": rid}
    refused = await proxy.post("/v1/responses", json=follow)
    assert refused.status == 400
    expected = dict(NOT_FOUND, message=f"Previous response with id '{rid}' not found.")
    assert await refused.json() == {"error": expected}


async def test_item_references_resolve_to_stored_items(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(completion(None, tool_calls=[PARIS_CALL], finish_reason="tool_calls")),
        Reply(completion("Sunny.")),
    )
    proxy = await make_proxy("chat")
    first = {"model": "m", "input": "Weather in Paris?", "tools": [WEATHER_TOOL]}
    made = await (await proxy.post("/v1/responses", json=first)).json()
    call_id = made["output"][0]["id"]
    listed = await (await proxy.get(f"/v1/responses/{made['id']}/input_items")).json()
    question_id = listed["data"][0]["id"]
    second = {
        "model": "m",
        "tools": [WEATHER_TOOL],
        "input": [
            {"type": "item_reference", "id": question_id},
            {"type": "item_reference", "id": call_id},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    }
    answered = await proxy.post("/v1/responses", json=second)
    assert answered.status == 200
    assert fake.last.json()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [PARIS_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    rid = (await answered.json())["id"]
    items = await (await proxy.get(f"/v1/responses/{rid}/input_items?order=asc")).json()
    assert [item["type"] for item in items["data"]] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert items["data"][1]["id"] == call_id


async def test_a_store_that_is_down(
    make_proxy: MakeProxy, fake: FakeUpstream, free_port: int
) -> None:
    fake.script(Reply(completion("Hi!")), StreamReply(text_chunks("Hi!")))
    proxy = await make_proxy("chat", store=f"redis://127.0.0.1:{free_port}/0")
    served = await proxy.post("/v1/responses", json={"model": "m", "input": "x"})
    assert served.status == 200
    assert (await served.json())["store"] is False
    streamed = await proxy.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})
    assert sse_events(await streamed.read())[-1]["response"]["store"] is False
    for response in (
        await proxy.post(
            "/v1/responses", json={"model": "m", "input": "y", "previous_response_id": "resp_1"}
        ),
        await proxy.get("/v1/responses/resp_1"),
        await proxy.delete("/v1/responses/resp_1"),
        await proxy.get("/v1/responses/resp_1/input_items"),
    ):
        assert response.status == 503
        error = (await response.json())["error"]
        assert error["code"] == "store_unavailable"
        assert error["message"].startswith("The response store is unavailable")
    assert len(fake.received) == 2


async def test_turns_cost_the_same_however_long_the_chain(
    make_proxy_server: MakeServer, fake: FakeUpstream
) -> None:
    fake.responder = lambda _: Reply(completion("Fine."))
    server = await make_proxy_server("chat")
    client = sdk(server)
    ids: list[str] = []
    for turn in range(60):
        made = await client.responses.create(
            model="m", input=f"turn {turn:03d}", previous_response_id=ids[-1] if ids else None
        )
        ids.append(made.id)
    assert len(fake.last.json()["messages"]) == 2 * 60 - 1
    await client.close()
    store = server.app[PROXY].store
    tenant = tenant_of({"Authorization": "Bearer sk-alice"})
    sizes = set()
    for rid in ids[1:]:
        record = await store.get(tenant, rid)
        assert record is not None
        sizes.add(len(record.body))
    assert len(sizes) == 1


def deepseek(received: Received) -> Reply | StreamReply:
    """A backend that, like DeepSeek's thinking mode, refuses a tool loop whose earlier
    assistant turns come back without their `reasoning_content`."""
    body = received.json()
    answered = [m for m in body["messages"] if m["role"] == "assistant"]
    for turn, message in enumerate(answered):
        if message.get("reasoning_content") != f"Thought {turn}.":
            error = {"message": f"assistant message {turn} lacks its reasoning_content"}
            return Reply({"error": {**error, "type": "invalid_request_error"}}, status=400)
    turn = len(answered)
    call = tool_call(f"call_{turn}", "get_weather", '{"city":"Paris"}')
    if not body.get("stream"):
        thought = f"Thought {turn}."
        return Reply(
            completion(
                None, tool_calls=[call], finish_reason="tool_calls", reasoning_content=thought
            )
        )
    header = {"index": 0, **call}
    return StreamReply(
        [
            chunk({"role": "assistant", "reasoning_content": "Thought "}),
            chunk({"reasoning_content": f"{turn}."}),
            chunk({"tool_calls": [header]}),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ]
    )


def tool_result(turn: int) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"call_{turn}", "output": "sunny"}


async def create(proxy: Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/responses; a streamed answer is checked event by event and its result kept."""
    answer = await proxy.post("/v1/responses", json=body)
    assert answer.status == 200, await answer.text()
    if not body.get("stream"):
        response: dict[str, Any] = await answer.json()
        assert_valid_response(response)
        return response
    events = sse_events(await answer.read())
    response = assert_valid_stream(events)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == response["output"]
    return response


async def test_reasoning_comes_back_through_the_store(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.responder = deepseek
    proxy = await make_proxy("chat")
    made = await create(proxy, {"model": "m", "input": "Go", "tools": [WEATHER_TOOL]})
    for turn in range(3):
        body = {
            "model": "m",
            "previous_response_id": made["id"],
            "input": [tool_result(turn)],
            "tools": [WEATHER_TOOL],
            "stream": turn % 2 == 0,
        }
        made = await create(proxy, body)
        assert [item["type"] for item in made["output"]] == ["reasoning", "function_call"]
        assert "encrypted_content" not in made["output"][0]
    assert [m.get("reasoning_content") for m in fake.last.json()["messages"]] == [
        None,
        "Thought 0.",
        None,
        "Thought 1.",
        None,
        "Thought 2.",
        None,
    ]


async def test_reasoning_comes_back_sealed_without_the_store(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.responder = deepseek
    proxy = await make_proxy("chat")
    stateless = {"store": False, "include": ["reasoning.encrypted_content"]}
    conversation: list[dict[str, Any]] = [{"role": "user", "content": "Go"}]
    for turn in range(3):
        body = {"model": "m", "input": conversation, "tools": [WEATHER_TOOL], **stateless}
        made = await create(proxy, {**body, "stream": turn % 2 == 1})
        reasoning, call = made["output"]
        assert isinstance(reasoning["encrypted_content"], str)
        assert "Thought" not in reasoning["encrypted_content"]
        assert (await proxy.get(f"/v1/responses/{made['id']}")).status == 404
        opaque = {key: reasoning[key] for key in ("type", "id", "encrypted_content")}
        opaque["summary"] = []  # only the sealed blob can give the backend its reasoning back
        conversation += [opaque, call, tool_result(turn)]
    last = fake.last.json()["messages"]
    assert [m.get("reasoning_content") for m in last] == [
        None,
        "Thought 0.",
        None,
        "Thought 1.",
        None,
    ]
    assert len(fake.received) == 3


@pytest.mark.parametrize("damage", ["tampered", "truncated", "foreign"])
async def test_a_damaged_blob_is_refused(
    make_proxy: MakeProxy, fake: FakeUpstream, damage: str
) -> None:
    fake.responder = deepseek
    proxy = await make_proxy("chat")
    stateless = {"store": False, "include": ["reasoning.encrypted_content"]}
    first = {"model": "m", "input": "Go", "tools": [WEATHER_TOOL], **stateless}
    reasoning, call = (await create(proxy, first))["output"]
    blob = reasoning["encrypted_content"]
    if damage == "tampered":
        blob = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    elif damage == "truncated":
        blob = blob[:-5]
    else:
        blob = "gAAAAABnotdiglotsblob"
    opaque = {"type": "reasoning", "summary": [], "encrypted_content": blob}
    body = {**first, "input": ["Go", opaque, call, tool_result(0)]}
    body["input"][0] = {"role": "user", "content": "Go"}
    refused = await proxy.post("/v1/responses", json=body)
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["param"] == "input[1].encrypted_content"
    assert error["code"] == "invalid_encrypted_content"
    assert len(fake.received) == 1


async def test_a_streamed_response_is_stored_before_it_ends(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(StreamReply(text_chunks("Hi", "!")))
    proxy = await make_proxy("chat")
    store = proxy.server.app[PROXY].store
    storing, release = asyncio.Event(), asyncio.Event()
    put = store.put

    async def held_put(record: Any) -> None:
        storing.set()
        await release.wait()
        await put(record)

    store.put = held_put  # type: ignore[method-assign]
    answer = await proxy.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})
    await storing.wait()
    before = answer.content.read_nowait()
    assert b"response.completed" not in before  # nothing ends the stream while it is stored
    release.set()
    events = sse_events(before + await answer.read())
    assert events[-1]["type"] == "response.completed"
    stored = await proxy.get(f"/v1/responses/{events[-1]['response']['id']}")
    assert await stored.json() == events[-1]["response"]


async def test_a_blob_opens_only_for_the_key_it_was_sealed_for(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.responder = deepseek
    proxy = await make_proxy("chat")
    stateless = {
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "tools": [WEATHER_TOOL],
    }
    alice, bob = {"Authorization": "Bearer sk-alice"}, {"Authorization": "Bearer sk-bob"}
    first = await proxy.post(
        "/v1/responses", json={"model": "m", "input": "Go", **stateless}, headers=alice
    )
    reasoning, call = (await first.json())["output"]
    opaque = {
        "type": "reasoning",
        "summary": [],
        "encrypted_content": reasoning["encrypted_content"],
    }
    replay = [{"role": "user", "content": "Go"}, opaque, call, tool_result(0)]
    body = {"model": "m", "input": replay, **stateless}
    refused = await proxy.post("/v1/responses", json=body, headers=bob)
    assert refused.status == 400
    assert (await refused.json())["error"]["param"] == "input[1].encrypted_content"
    accepted = await proxy.post("/v1/responses", json=body, headers=alice)
    assert accepted.status == 200


async def test_input_items_cover_the_conversation_a_response_continues(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(completion(None, tool_calls=[PARIS_CALL], finish_reason="tool_calls")),
        Reply(completion("Sunny.")),
    )
    proxy = await make_proxy("chat")
    first = {"model": "m", "input": "Weather in Paris?", "tools": [WEATHER_TOOL]}
    one = await create(proxy, first)
    call = one["output"][0]
    second = {
        "model": "m",
        "previous_response_id": one["id"],
        "tools": [WEATHER_TOOL],
        "input": [call, {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    }
    two = await create(proxy, second)
    listed = await (await proxy.get(f"/v1/responses/{two['id']}/input_items?order=asc")).json()
    TypeAdapter(ResponseItemList).validate_python(listed)
    data = listed["data"]
    assert [(item["type"], item.get("role")) for item in data] == [
        ("message", "user"),
        ("function_call", None),
        ("function_call", None),
        ("function_call_output", None),
    ]
    assert data[1] == call
    assert data[2]["id"] != call["id"] and data[2]["call_id"] == "call_1"
    assert len({item["id"] for item in data}) == 4
    newest = await (await proxy.get(f"/v1/responses/{two['id']}/input_items?limit=1")).json()
    assert [item["id"] for item in newest["data"]] == [data[-1]["id"]]
    assert newest["has_more"] is True


async def test_big_integers_are_stored_exactly(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("Noted.")))
    proxy = await make_proxy("chat")
    big = 2**70 + 1
    raw = b'{"model":"m","input":[{"role":"user","content":"count","x-trace":%d}]}' % big
    made = await proxy.post("/v1/responses", data=raw, headers={"Content-Type": "application/json"})
    assert made.status == 200
    rid = (await made.json())["id"]
    listed = await proxy.get(f"/v1/responses/{rid}/input_items")
    assert b'"x-trace":%d' % big in await listed.read()
