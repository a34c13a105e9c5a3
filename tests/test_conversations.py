"""The Conversations API, driven by the real openai SDK: conversations and items kept by diglot in
front of a chat upstream (each store), and relayed untouched to a Responses upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI, BadRequestError, InternalServerError, NotFoundError
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)

from diglot.proxy.app import create_app
from diglot.proxy.conversations import join_conversation
from diglot.proxy.store import DAY, StoredItem
from diglot.proxy.store import Conversation as StoredConversation
from diglot.proxy.store.memory import MemoryStore
from diglot.translators.errors import RequestError
from diglot.translators.ids import IdMint
from diglot.translators.responses_models import decode_responses_request
from fixtures.fake_chat_upstream import FakeUpstream, Reply
from tests.conftest import proxy_config
from tests.redis_server import redis_server, redis_url
from tests.validate import _sdk

if TYPE_CHECKING:
    from tests.conftest import MakeProxy, MakeServer

__all__ = ["redis_server", "redis_url"]

Serve = Callable[[str], Awaitable[TestServer]]
USER = {"type": "message", "role": "user", "content": "What is 2 + 2?"}
ANSWER = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]}
CALL = {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a":2}'}


def client_of(server: TestServer, key: str = "sk-one") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


@pytest.fixture
async def client(make_proxy_server: MakeServer) -> AsyncIterator[AsyncOpenAI]:
    openai = client_of(await make_proxy_server("chat"))
    yield openai
    await openai.close()


@pytest.fixture
def serve(aiohttp_server: Any, fake_server: TestServer) -> Serve:
    """diglot in front of the fake chat upstream with the given store."""

    async def start(store: str) -> TestServer:
        config = proxy_config(str(fake_server.make_url("/v1")), "chat", store=store)
        server: TestServer = await aiohttp_server(create_app(config))
        return server

    return start


def valid(kind: Any, raw: Any) -> dict[str, Any]:
    """The raw JSON answer, checked strictly against the SDK type."""
    body: dict[str, Any] = orjson.loads(raw.content)
    _sdk(kind, body)
    return body


def valid_page(raw: Any) -> dict[str, Any]:
    """An item list: the envelope's exact keys, each item a ConversationItem."""
    body: dict[str, Any] = orjson.loads(raw.content)
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list"
    for item in body["data"]:
        _sdk(ConversationItem, item)
    ids = [item["id"] for item in body["data"]]
    assert (body["first_id"], body["last_id"]) == ((ids[0], ids[-1]) if ids else (None, None))
    return body


def error(caught: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    body: dict[str, Any] = caught.value.response.json()
    return body


async def test_create_shapes_the_items_as_openai_returns_them(client: AsyncOpenAI) -> None:
    raw = await client.conversations.with_raw_response.create(
        items=[USER, ANSWER, CALL], metadata={"topic": "sums"}
    )
    created = valid(Conversation, raw)
    assert created["id"].startswith("conv_")
    assert created == {
        "id": created["id"],
        "object": "conversation",
        "created_at": created["created_at"],
        "metadata": {"topic": "sums"},
    }
    listed = valid_page(
        await client.conversations.items.with_raw_response.list(created["id"], order="asc")
    )
    ids = [item["id"] for item in listed["data"]]
    assert [i.split("_")[0] for i in ids] == ["msg", "msg", "fc"]
    assert listed == {
        "object": "list",
        "data": [
            {
                "id": ids[0],
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What is 2 + 2?"}],
                "status": "completed",
            },
            {
                "id": ids[1],
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "4", "annotations": []}],
                "status": "completed",
            },
            {"id": ids[2], "status": "completed", **CALL},
        ],
        "first_id": ids[0],
        "last_id": ids[2],
        "has_more": False,
    }


async def test_items_without_ids_get_the_prefix_of_their_type(client: AsyncOpenAI) -> None:
    """The prefixes a stored response's items get: a compaction item's is `cmp`, too."""
    compaction = {"type": "compaction", "encrypted_content": "sealed"}
    created = await client.conversations.create(items=[USER, CALL, compaction])
    raw = await client.conversations.items.with_raw_response.list(created.id, order="asc")
    ids = [item["id"] for item in orjson.loads(raw.content)["data"]]
    assert [i.split("_")[0] for i in ids] == ["msg", "fc", "cmp"]


async def test_parts_get_the_fields_openai_gives_them(client: AsyncOpenAI) -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    said = {"type": "output_text", "text": "Hello"}
    conversation = await client.conversations.create(
        items=[
            {"role": "user", "content": [image]},
            {"role": "assistant", "content": [said]},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "done"},
        ]
    )
    raw = await client.conversations.items.with_raw_response.list(conversation.id, order="asc")
    data = valid_page(raw)["data"]
    assert data[0]["content"] == [{"detail": "auto", **image}]
    assert data[1]["content"] == [{"annotations": [], **said}]
    assert "status" not in data[2]  # OpenAI's custom tool call output has none


async def test_a_conversation_without_items_or_metadata(client: AsyncOpenAI) -> None:
    created = valid(Conversation, await client.conversations.with_raw_response.create())
    assert created["metadata"] == {}
    page = valid_page(await client.conversations.items.with_raw_response.list(created["id"]))
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


async def test_retrieve_update_delete(client: AsyncOpenAI) -> None:
    created = await client.conversations.create(metadata={"a": "1", "b": "2"})
    got = valid(Conversation, await client.conversations.with_raw_response.retrieve(created.id))
    assert got == created.model_dump()
    raw = await client.conversations.with_raw_response.update(created.id, metadata={"c": "3"})
    assert valid(Conversation, raw) == {**got, "metadata": {"c": "3"}}
    assert (await client.conversations.retrieve(created.id)).metadata == {"c": "3"}
    deleted = valid(
        ConversationDeletedResource, await client.conversations.with_raw_response.delete(created.id)
    )
    assert deleted == {"id": created.id, "object": "conversation.deleted", "deleted": True}
    with pytest.raises(NotFoundError) as caught:
        await client.conversations.retrieve(created.id)
    assert error(caught) == {
        "error": {
            "message": f"Conversation with id '{created.id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


async def test_items_are_added_listed_newest_first_and_paged(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create(items=[USER])
    raw = await client.conversations.items.with_raw_response.create(
        conversation.id,
        items=[ANSWER, {"role": "user", "content": "and 3 + 3?", "id": "msg_mine"}],
        include=["message.output_text.logprobs"],
    )
    added = valid(ConversationItemList, raw)
    assert [item["id"] for item in added["data"]][1] == "msg_mine"
    assert added["has_more"] is False
    assert (added["first_id"], added["last_id"]) == (added["data"][0]["id"], "msg_mine")
    first = valid_page(
        await client.conversations.items.with_raw_response.list(conversation.id, limit=2)
    )
    assert [item["id"] for item in first["data"]] == ["msg_mine", added["data"][0]["id"]]
    assert first["has_more"] is True
    rest = valid_page(
        await client.conversations.items.with_raw_response.list(
            conversation.id, limit=2, after=first["last_id"]
        )
    )
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert rest["data"][0]["content"] == [{"type": "input_text", "text": "What is 2 + 2?"}]
    walked = [item.id async for item in client.conversations.items.list(conversation.id, limit=1)]
    assert walked == [item["id"] for item in first["data"] + rest["data"]]


async def test_an_item_is_retrieved_and_deleting_it_answers_the_conversation(
    client: AsyncOpenAI,
) -> None:
    conversation = await client.conversations.create(items=[USER, CALL])
    ids = [item.id async for item in client.conversations.items.list(conversation.id, order="asc")]
    raw = await client.conversations.items.with_raw_response.retrieve(
        ids[1], conversation_id=conversation.id
    )
    assert valid(ConversationItem, raw) == {"id": ids[1], "status": "completed", **CALL}
    raw = await client.conversations.items.with_raw_response.delete(
        ids[1], conversation_id=conversation.id
    )
    assert valid(Conversation, raw) == conversation.model_dump()
    remaining = [item.id async for item in client.conversations.items.list(conversation.id)]
    assert remaining == ids[:1]
    with pytest.raises(NotFoundError) as caught:
        await client.conversations.items.retrieve(ids[1], conversation_id=conversation.id)
    assert error(caught)["error"]["message"] == f"Item with id '{ids[1]}' not found."
    with pytest.raises(NotFoundError) as caught:
        await client.conversations.items.delete(ids[1], conversation_id=conversation.id)
    assert error(caught)["error"]["message"] == f"Item with id '{ids[1]}' not found."


async def test_deleting_a_conversation_deletes_its_items(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create(items=[USER])
    (item_id,) = [item.id async for item in client.conversations.items.list(conversation.id)]
    await client.conversations.delete(conversation.id)
    missing = f"Conversation with id '{conversation.id}' not found."
    with pytest.raises(NotFoundError) as caught:
        await client.conversations.items.retrieve(item_id, conversation_id=conversation.id)
    assert error(caught)["error"]["message"] == missing
    with pytest.raises(NotFoundError) as caught:
        await client.conversations.items.list(conversation.id)
    assert error(caught)["error"]["message"] == missing
    with pytest.raises(NotFoundError):
        await client.conversations.delete(conversation.id)


async def test_every_route_names_an_unknown_conversation(client: AsyncOpenAI) -> None:
    items = client.conversations.items
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.conversations.retrieve("conv_x"),
        lambda: client.conversations.update("conv_x", metadata={}),
        lambda: client.conversations.delete("conv_x"),
        lambda: items.list("conv_x"),
        lambda: items.list("conv_x", after="msg_1"),
        lambda: items.create("conv_x", items=[USER]),
        lambda: items.retrieve("msg_1", conversation_id="conv_x"),
        lambda: items.delete("msg_1", conversation_id="conv_x"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as caught:
            await call()
        assert error(caught) == {
            "error": {
                "message": "Conversation with id 'conv_x' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }


async def test_another_key_sees_no_conversation(make_proxy_server: MakeServer) -> None:
    server = await make_proxy_server("chat")
    owner, other = client_of(server, "sk-owner"), client_of(server, "sk-other")
    conversation = await owner.conversations.create(items=[USER], metadata={"k": "v"})
    (item_id,) = [item.id async for item in owner.conversations.items.list(conversation.id)]
    items = other.conversations.items
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: other.conversations.retrieve(conversation.id),
        lambda: other.conversations.update(conversation.id, metadata={}),
        lambda: items.list(conversation.id),
        lambda: items.create(conversation.id, items=[USER]),
        lambda: items.retrieve(item_id, conversation_id=conversation.id),
        lambda: items.delete(item_id, conversation_id=conversation.id),
        lambda: other.conversations.delete(conversation.id),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call()
    assert (await owner.conversations.retrieve(conversation.id)).metadata == {"k": "v"}
    assert [item.id async for item in owner.conversations.items.list(conversation.id)] == [item_id]
    await owner.close()
    await other.close()


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (
            {"items": [USER] * 21},
            "items",
            "array_above_max_length",
            "Invalid 'items': array too long. Expected an array with maximum length 20, but got "
            "an array with length 21 instead.",
        ),
        (
            {"items": [USER, {"type": "function_call", "name": "f", "arguments": "{}"}]},
            "items[1].call_id",
            "missing_required_parameter",
            "Missing required parameter: 'items[1].call_id'.",
        ),
        (
            {"items": [{"type": "item_reference", "id": "msg_1"}]},
            "items[0].type",
            "invalid_value",
            "Items of type 'item_reference' cannot be added to a conversation; add the item "
            "itself.",
        ),
        (
            {"items": [{**USER, "id": "msg_1"}, {**USER, "id": "msg_1"}]},
            "items[1].id",
            "invalid_value",
            "Duplicate item id 'msg_1': a conversation holds each item once.",
        ),
        (
            {"items": [{"type": ["message"]}]},
            "items[0].type",
            "invalid_type",
            "Invalid type for 'items[0].type': expected a string.",
        ),
        (
            {"items": "hello"},
            "items",
            "invalid_type",
            "Invalid type for 'items': expected an array of input items.",
        ),
        ({"title": "x"}, "title", "unknown_parameter", "Unknown parameter: 'title'."),
        (
            {"metadata": {f"k{n}": "v" for n in range(17)}},
            "metadata",
            "invalid_value",
            "Invalid 'metadata': too many keys. Expected at most 16, got 17.",
        ),
        (
            {"metadata": {"k": "v" * 513}},
            "metadata",
            "invalid_value",
            "Invalid 'metadata': keys are at most 64 characters long and values at most 512; "
            "'k' is longer.",
        ),
        (
            {"metadata": {"k": 1}},
            "metadata",
            "invalid_type",
            "Invalid type for 'metadata': expected an object with string values.",
        ),
    ],
)
async def test_a_bad_create_is_a_400_naming_the_field(
    make_proxy: MakeProxy, body: dict[str, Any], param: str, code: str, message: str
) -> None:
    proxy = await make_proxy("chat")
    answer = await proxy.post("/v1/conversations", json=body)
    assert answer.status == 400
    assert await answer.json() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


async def test_bad_item_requests_are_400s_naming_the_field(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create(items=[{**USER, "id": "msg_1"}])
    items = client.conversations.items
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: items.create(conversation.id, items=[{**USER, "id": "msg_1"}]), "items[0].id"),
        (lambda: items.create(conversation.id, items=[]), "items"),
        (lambda: items.list(conversation.id, limit=0), "limit"),
        (lambda: items.list(conversation.id, limit=101), "limit"),
        (lambda: items.list(conversation.id, order="sideways"), "order"),  # type: ignore[arg-type]
        (lambda: items.list(conversation.id, after="msg_unknown"), "after"),
        (
            lambda: client.conversations.update(conversation.id, metadata={}, extra_body={"x": 1}),
            "x",
        ),
    ]
    for call, param in cases:
        with pytest.raises(BadRequestError) as caught:
            await call()
        assert error(caught)["error"]["param"] == param
    listed = [item.id async for item in items.list(conversation.id)]
    assert listed == ["msg_1"]


async def test_update_needs_metadata(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy("chat")
    created = await (await proxy.post("/v1/conversations", json={})).json()
    answer = await proxy.post(f"/conversations/{created['id']}", json={})
    assert answer.status == 400
    assert (await answer.json())["error"]["param"] == "metadata"
    cleared = await proxy.post(f"/conversations/{created['id']}", json={"metadata": None})
    assert (await cleared.json())["metadata"] == {}


async def test_the_routes_answer_without_v1_too(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy("chat")
    created = await (await proxy.post("/conversations", json={"items": [USER]})).json()
    listed = await proxy.get(f"/conversations/{created['id']}/items")
    assert (await listed.json())["data"][0]["role"] == "user"
    wrong = await proxy.put(f"/conversations/{created['id']}")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "DELETE,GET,POST"


async def test_sqlite_keeps_conversations_across_a_restart(serve: Serve, tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/responses.db"
    first = await serve(store)
    before = client_of(first)
    conversation = await before.conversations.create(items=[USER], metadata={"k": "v"})
    await before.close()
    await first.close()
    after = client_of(await serve(store))
    assert (await after.conversations.retrieve(conversation.id)).model_dump() == (
        conversation.model_dump()
    )
    listed = [item.type async for item in after.conversations.items.list(conversation.id)]
    assert listed == ["message"]
    await after.close()


async def test_replicas_on_one_redis_share_conversations(serve: Serve, redis_url: str) -> None:
    one, two = client_of(await serve(redis_url)), client_of(await serve(redis_url))
    conversation = await one.conversations.create(items=[USER])
    await two.conversations.items.create(conversation.id, items=[ANSWER])
    roles = [item.role async for item in one.conversations.items.list(conversation.id)]  # type: ignore[union-attr]
    assert roles == ["assistant", "user"]
    stranger = client_of(await serve(redis_url), "sk-stranger")
    with pytest.raises(NotFoundError):
        await stranger.conversations.retrieve(conversation.id)
    await two.conversations.delete(conversation.id)
    with pytest.raises(NotFoundError):
        await one.conversations.retrieve(conversation.id)
    for client in (one, two, stranger):
        await client.close()


async def test_a_store_that_is_down_is_a_503(serve: Serve, free_port: int) -> None:
    client = client_of(await serve(f"redis://127.0.0.1:{free_port}/0"))
    for call in (
        lambda: client.conversations.create(),
        lambda: client.conversations.items.list("conv_x"),
    ):
        with pytest.raises(InternalServerError) as caught:
            await call()
        assert caught.value.status_code == 503
        assert error(caught)["error"]["code"] == "store_unavailable"
    await client.close()


async def test_a_responses_upstream_gets_every_route_untouched(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    answers = [Reply({"answer": n}) for n in range(8)]
    fake.script(*answers, Reply({"error": {"message": "No conversation."}}, status=404))
    proxy = await make_proxy("responses")
    auth = {"Authorization": "Bearer sk-up", "Content-Type": "application/json"}
    sent = [
        ("POST", "/v1/conversations", b'{"items":[],"metadata":{"a":"b"}}'),
        ("GET", "/v1/conversations/conv_1", b""),
        ("POST", "/v1/conversations/conv_1", b'{"metadata":{}}'),
        ("GET", "/v1/conversations/conv_1/items?limit=5&order=asc&include=x", b""),
        ("POST", "/v1/conversations/conv_1/items?include=y", b'{"items":[1]}'),
        ("GET", "/conversations/conv_1/items/msg_1", b""),
        ("DELETE", "/v1/conversations/conv_1/items/msg%2F1", b""),
        ("DELETE", "/v1/conversations/conv_1", b""),
        ("GET", "/v1/conversations/conv_x", b""),
    ]
    for n, (method, path, body) in enumerate(sent):
        answer = await proxy.request(method, path, data=body or None, headers=auth)
        if n < len(answers):
            assert (answer.status, await answer.json()) == (200, {"answer": n})
        else:
            assert answer.status == 404
            assert (await answer.json())["error"]["message"] == "No conversation."
    seen = [(r.method, r.path, r.query, r.body) for r in fake.received]
    assert seen == [
        ("POST", "/v1/conversations", "", sent[0][2]),
        ("GET", "/v1/conversations/conv_1", "", b""),
        ("POST", "/v1/conversations/conv_1", "", sent[2][2]),
        ("GET", "/v1/conversations/conv_1/items", "limit=5&order=asc&include=x", b""),
        ("POST", "/v1/conversations/conv_1/items", "include=y", sent[4][2]),
        ("GET", "/v1/conversations/conv_1/items/msg_1", "", b""),
        ("DELETE", "/v1/conversations/conv_1/items/msg/1", "", b""),
        ("DELETE", "/v1/conversations/conv_1", "", b""),
        ("GET", "/v1/conversations/conv_x", "", b""),
    ]
    assert all(r.headers["Authorization"] == "Bearer sk-up" for r in fake.received)
    assert fake.received[0].headers["Content-Type"] == "application/json"


async def test_a_turn_joined_to_a_conversation_reads_it_then_appends_its_items() -> None:
    store = MemoryStore(30 * DAY, None, time.time)
    earlier = {
        "id": "msg_1",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hi"}],
        "status": "completed",
    }
    await store.put_conversation(
        StoredConversation("conv_a", "t1", 1.0, b"{}"), [StoredItem("msg_1", orjson.dumps(earlier))]
    )
    raw = orjson.dumps(
        {
            "model": "m",
            "instructions": "Be brief.",
            "conversation": {"id": "conv_a"},
            "input": [{"id": "msg_1", "role": "user", "content": "Again"}, CALL],
        }
    )
    request = decode_responses_request(raw)
    joined = await join_conversation(store, "t1", request, IdMint())
    assert joined is not None and joined.id == "conv_a"
    assert request.params.conversation is None  # nothing left for the translation to refuse
    assert [type(item).__name__ for item in joined.history] == ["MessageItem"]
    joined.take_input(raw, {})
    output = [{"id": "msg_out", "type": "message", "role": "assistant", "status": "completed"}]
    output[0]["content"] = [{"type": "output_text", "text": "4", "annotations": []}]
    await joined.append({"status": "failed", "output": output})
    found = await store.conversation_items("t1", "conv_a")
    assert found is not None and [item.id for item in found.items] == ["msg_1"]
    await joined.append({"status": "completed", "output": output})
    found = await store.conversation_items("t1", "conv_a")
    assert found is not None
    items = [orjson.loads(item.body) for item in found.items]
    for item in items:
        _sdk(ConversationItem, item)
    again_id, call_id = items[1]["id"], items[2]["id"]
    assert again_id.startswith("msg_") and again_id != "msg_1"  # the conversation held msg_1
    assert items[1:] == [
        {
            "id": again_id,
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Again"}],
            "status": "completed",
        },
        {"id": call_id, "status": "completed", **CALL},
        output[0],
    ]
    elsewhere = decode_responses_request(b'{"model":"m","input":"x"}')
    assert await join_conversation(store, "t1", elsewhere, IdMint()) is None


async def test_joining_a_conversation_refuses_what_openai_refuses() -> None:
    store = MemoryStore(30 * DAY, None, time.time)
    await store.put_conversation(StoredConversation("conv_a", "t1", 1.0, b"{}"), [])
    cases = [
        (b'{"model":"m","input":"x","conversation":"conv_a","previous_response_id":"r"}', 400),
        (b'{"model":"m","input":"x","conversation":"conv_b"}', 404),
        (b'{"model":"m","input":"x","conversation":{"name":"conv_a"}}', 400),
    ]
    for raw, status in cases:
        with pytest.raises(RequestError) as caught:
            await join_conversation(store, "t1", decode_responses_request(raw), IdMint())
        assert (caught.value.status, caught.value.param) == (status, "conversation")
    with pytest.raises(RequestError) as foreign:
        await join_conversation(
            store,
            "t2",
            decode_responses_request(b'{"model":"m","input":"x","conversation":"conv_a"}'),
            IdMint(),
        )
    assert foreign.value.message == "Conversation with id 'conv_a' not found."
