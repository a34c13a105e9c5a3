"""POST /v1/responses/input_tokens through the real openai SDK: exact counts from a llama.cpp- or
vLLM-like backend, equal to the `prompt_tokens` it reports; an estimate from one without a
tokenizer; relayed untouched to a Responses upstream."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI, BadRequestError, NotFoundError
from openai.types.responses.input_token_count_response import InputTokenCountResponse
from structlog.testing import capture_logs

from diglot.proxy.app import create_app
from fixtures.fake_chat_upstream import FakeUpstream, Reply
from fixtures.fake_tokenizing_upstream import Flavour, TokenizingUpstream
from tests.conftest import proxy_config
from tests.validate import _sdk

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

Start = Callable[[Flavour], Awaitable[tuple[TokenizingUpstream, AsyncOpenAI]]]
MODEL = "local-model"
TOOL = {
    "type": "function",
    "name": "add",
    "description": "Adds two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}}},
}
REQUEST: dict[str, Any] = {
    "model": MODEL,
    "instructions": "Answer briefly.",
    "input": [{"role": "user", "content": "What is 2 + 2, and why?"}],
    "tools": [TOOL],
}


@pytest.fixture
async def start(aiohttp_server: Any) -> AsyncIterator[Start]:
    """A tokenizing backend of one flavour and diglot in front of it, with an SDK client."""
    clients: list[AsyncOpenAI] = []

    async def make(flavour: Flavour) -> tuple[TokenizingUpstream, AsyncOpenAI]:
        backend = TokenizingUpstream(flavour)
        upstream: TestServer = await aiohttp_server(backend.app())
        config = proxy_config(str(upstream.make_url("/v1")), "chat")
        proxy: TestServer = await aiohttp_server(create_app(config))
        client = AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="sk-t", max_retries=0)
        clients.append(client)
        return backend, client

    yield make
    for client in clients:
        await client.close()


async def count(client: AsyncOpenAI, **request: Any) -> int:
    """The count, its raw body checked strictly against the SDK type."""
    raw = await client.responses.input_tokens.with_raw_response.count(**request)
    body = orjson.loads(raw.content)
    _sdk(InputTokenCountResponse, body)
    assert set(body) == {"object", "input_tokens"}
    assert body["object"] == "response.input_tokens"
    parsed = raw.parse()
    assert parsed.input_tokens == body["input_tokens"]
    return parsed.input_tokens


async def prompt_tokens(client: AsyncOpenAI, **request: Any) -> int:
    """What the backend reports for the same request, generated."""
    response = await client.responses.create(**request)
    assert response.usage is not None
    return response.usage.input_tokens


async def test_llama_cpp_counts_what_it_will_report(start: Start) -> None:
    backend, client = await start("llama.cpp")
    with capture_logs() as logs:
        counted = await count(client, **REQUEST)
    assert counted == await prompt_tokens(client, **REQUEST)
    assert backend.paths == ["/apply-template", "/tokenize", "/v1/chat/completions"]
    template_body, tokenize_body = backend.received[0][1], backend.received[1][1]
    chat_body = backend.received[2][1]
    assert template_body["messages"] == chat_body["messages"]
    assert template_body["tools"] == chat_body["tools"]
    assert tokenize_body["add_special"] is True and tokenize_body["parse_special"] is True
    assert [entry["way"] for entry in logs if entry["event"] == "input_tokens_counted"] == [
        "llama.cpp"
    ]


async def test_vllm_counts_what_it_will_report_and_is_remembered(start: Start) -> None:
    backend, client = await start("vllm")
    counted = await count(client, **REQUEST)
    assert counted == await prompt_tokens(client, **REQUEST)
    assert backend.paths == ["/apply-template", "/tokenize", "/v1/chat/completions"]
    assert set(backend.received[1][1]) == {"model", "messages", "tools"}
    other = {**REQUEST, "input": "Something else entirely, and longer."}
    with capture_logs() as logs:
        again = await count(client, **other)
    assert backend.paths[3:] == ["/tokenize"]  # no second look for llama.cpp
    assert again == await prompt_tokens(client, **other)
    assert [entry["way"] for entry in logs if entry["event"] == "input_tokens_counted"] == ["vllm"]


async def test_without_a_tokenizer_it_is_an_estimate(start: Start) -> None:
    backend, client = await start("none")
    with capture_logs() as logs:
        counted = await count(client, **REQUEST)
    await prompt_tokens(client, **REQUEST)
    chat_body = backend.received[-1][1]
    as_json = orjson.dumps({"messages": chat_body["messages"], "tools": chat_body["tools"]})
    assert counted == math.ceil(len(as_json.decode()) / 4)
    assert [entry["way"] for entry in logs if entry["event"] == "input_tokens_counted"] == [
        "estimate"
    ]
    await count(client, **REQUEST)
    assert backend.paths == ["/apply-template", "/tokenize", "/v1/chat/completions"]  # once


async def test_a_failing_tokenizer_gives_an_estimate_and_is_asked_again(start: Start) -> None:
    backend, client = await start("llama.cpp")
    backend.failing = True
    with capture_logs() as logs:
        await count(client, **REQUEST)
    assert [entry["way"] for entry in logs if entry["event"] == "input_tokens_counted"] == [
        "estimate"
    ]
    backend.failing = False
    assert await count(client, **REQUEST) == await prompt_tokens(client, **REQUEST)
    assert backend.paths == [
        "/apply-template",
        "/tokenize",  # vLLM's way, failing too
        "/apply-template",
        "/tokenize",
        "/v1/chat/completions",
    ]


async def test_a_continued_response_counts_the_whole_conversation(start: Start) -> None:
    _, client = await start("llama.cpp")
    first = await client.responses.create(**REQUEST)
    follow_up = {"model": MODEL, "input": "And 3 + 3?", "previous_response_id": first.id}
    counted = await count(client, **follow_up)
    assert counted == await prompt_tokens(client, **follow_up)
    assert counted > await count(client, model=MODEL, input="And 3 + 3?")


async def test_a_conversation_counts_its_items_first(start: Start) -> None:
    _, client = await start("llama.cpp")
    history = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]
    conversation = await client.conversations.create(items=history)
    question = {"role": "user", "content": "And 3 + 3?"}
    counted = await count(client, model=MODEL, conversation=conversation.id, input=[question])
    assert counted == await count(client, model=MODEL, input=[*history, question])
    by_object = await count(client, model=MODEL, conversation={"id": conversation.id})
    assert by_object == await count(client, model=MODEL, input=history)


async def test_conversation_errors_name_it(start: Start) -> None:
    _, client = await start("llama.cpp")
    with pytest.raises(NotFoundError) as missing:
        await count(client, model=MODEL, input="hi", conversation="conv_unknown")
    assert missing.value.response.json() == {
        "error": {
            "message": "Conversation with id 'conv_unknown' not found.",
            "type": "invalid_request_error",
            "param": "conversation",
            "code": "conversation_not_found",
        }
    }
    with pytest.raises(BadRequestError) as both:
        await count(
            client, model=MODEL, input="hi", conversation="conv_x", previous_response_id="resp_x"
        )
    assert both.value.response.json()["error"]["param"] == "conversation"


async def test_a_bad_body_is_a_400_naming_the_field(start: Start) -> None:
    backend, client = await start("llama.cpp")
    with pytest.raises(BadRequestError) as caught:
        await count(client, input="hi")
    assert caught.value.response.json()["error"]["param"] == "model"
    with pytest.raises(BadRequestError) as caught:
        await count(client, model=MODEL, input="hi", previous_response_id="resp_unknown")
    assert caught.value.response.json()["error"]["param"] == "previous_response_id"
    assert backend.received == []


async def test_the_route_is_matched_before_the_stored_response_routes(
    make_proxy: MakeProxy,
) -> None:
    proxy = await make_proxy("chat")
    for path in ("/v1/responses/input_tokens", "/responses/input_tokens"):
        answer = await proxy.post(path, json={"model": MODEL, "input": "Hello there"})
        assert answer.status == 200
        assert await answer.json() == {"object": "response.input_tokens", "input_tokens": 17}
    other = await proxy.get("/v1/responses/input_tokens")  # not taken for a response id
    assert (other.status, other.headers["Allow"]) == (405, "POST")
    assert (await other.json())["error"]["message"] == (
        "Method GET is not allowed on /v1/responses/input_tokens"
    )
    items = await proxy.get("/v1/responses/input_tokens/input_items")
    assert items.status == 404


async def test_a_responses_upstream_counts_for_itself(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply({"object": "response.input_tokens", "input_tokens": 7}))
    proxy = await make_proxy("responses")
    body = b'{"model":"gpt-5","input":"hi","conversation":"conv_1"}'
    answer = await proxy.post(
        "/v1/responses/input_tokens",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-up"},
    )
    assert (answer.status, await answer.json()) == (
        200,
        {"object": "response.input_tokens", "input_tokens": 7},
    )
    assert (fake.last.method, fake.last.path, fake.last.body) == (
        "POST",
        "/v1/responses/input_tokens",
        body,
    )
    assert fake.last.headers["Authorization"] == "Bearer sk-up"
