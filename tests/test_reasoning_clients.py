"""With default settings, the clients people use show a chat backend's reasoning, exactly once.

The openai SDK, openai-agents, LangChain (`ChatOpenAI(use_responses_api=True)`), the Vercel AI SDK
(`@ai-sdk/openai` Responses provider, driven by `tests/js/reasoning.mjs`) and Codex CLI all read
reasoning summaries; none of them shows raw `reasoning_text` by default.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    ReasoningItem,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    Script,
    StreamReply,
    chunk,
    completion,
    text_chunks,
    tool_call,
    tool_call_chunks,
)
from tests.test_codex_cli import codex_env
from tests.validate import assert_valid_response, assert_valid_stream, assert_valid_stream_event
from tests.weather import INSTRUCTIONS

if TYPE_CHECKING:
    from aiohttp.test_utils import TestServer

    from tests.conftest import MakeServer

PIECES = ("The user asks", " for 2 + 2.")
REASONING = "".join(PIECES)
ANSWER = "Four."
SUMMARY = [{"type": "summary_text", "text": REASONING}]
JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
CODEX = shutil.which("codex")


def reasoning_chunks() -> list[dict[str, Any] | bytes]:
    """The backend's reasoning in two `reasoning_content` deltas."""
    first = chunk({"role": "assistant", "reasoning_content": PIECES[0]})
    return [first, *(chunk({"reasoning_content": piece}) for piece in PIECES[1:])]


def reason_then_answer(received: Received) -> Script:
    """Reasoning, then the answer, streamed or whole as the request asks."""
    if received.json().get("stream"):
        return StreamReply(reasoning_chunks() + text_chunks("Fo", "ur."))
    return Reply(completion(ANSWER, reasoning_content=REASONING))


@pytest.fixture
async def diglot(make_proxy_server: MakeServer, fake: FakeUpstream) -> TestServer:
    """diglot with default settings in front of a backend that reasons before answering."""
    fake.responder = reason_then_answer
    return await make_proxy_server("chat")


@pytest.fixture
async def client(diglot: TestServer) -> AsyncIterator[AsyncOpenAI]:
    openai = AsyncOpenAI(base_url=str(diglot.make_url("/v1")), api_key="sk-test", max_retries=0)
    yield openai
    await openai.close()


async def test_openai_sdk_create_gets_the_reasoning_as_its_summary(client: AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(model="fake-model", input="2 + 2?")
    body = json.loads(raw.text)
    assert_valid_response(body)
    reasoning, message = body["output"]
    assert {key: reasoning[key] for key in reasoning if key != "id"} == {
        "type": "reasoning",
        "status": "completed",
        "summary": SUMMARY,
    }
    assert message["content"][0]["text"] == ANSWER
    assert raw.text.count(REASONING) == 1


async def test_openai_sdk_raw_stream_carries_the_reasoning_as_summary_events(
    client: AsyncOpenAI,
) -> None:
    stream = await client.responses.create(model="fake-model", input="2 + 2?", stream=True)
    events: list[dict[str, Any]] = [event.to_dict() async for event in stream]
    response = assert_valid_stream(events)
    reasoning = [e["type"] for e in events if "reasoning" in e["type"]]
    assert reasoning == [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    assert [e["delta"] for e in events if e["type"].endswith("summary_text.delta")] == list(PIECES)
    assert {key: response["output"][0][key] for key in ("summary", "status")} == {
        "summary": SUMMARY,
        "status": "completed",
    }
    assert "content" not in response["output"][0]


async def test_openai_sdk_stream_helper_shows_the_reasoning_once(client: AsyncOpenAI) -> None:
    async with client.responses.stream(model="fake-model", input="2 + 2?") as stream:
        shown = [
            event.delta
            async for event in stream
            if event.type == "response.reasoning_summary_text.delta"
        ]
        final = await stream.get_final_response()
    assert shown == list(PIECES)
    reasoning = final.output[0]
    assert reasoning.type == "reasoning"
    assert (reasoning.summary[0].text, len(reasoning.summary), reasoning.content) == (
        REASONING,
        1,
        None,
    )
    assert final.output_text == ANSWER


async def test_reasoning_events_text_gives_raw_reasoning_text_instead(
    make_proxy_server: MakeServer, fake: FakeUpstream
) -> None:
    """The opt-in for clients that read raw `reasoning_text` rather than summaries."""
    fake.responder = reason_then_answer
    server = await make_proxy_server("chat", reasoning_events="text")
    async with AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="sk-test") as openai:
        response = await openai.responses.create(model="fake-model", input="2 + 2?")
    reasoning = response.output[0].to_dict()
    assert {key: reasoning[key] for key in ("summary", "content")} == {
        "summary": [],
        "content": [{"type": "reasoning_text", "text": REASONING}],
    }


def agent_reasons_then_calls(received: Received) -> Script:
    """The weather tool call after reasoning, then the answer once the tool's output is back."""
    body = received.json()
    if body["messages"][-1]["role"] == "tool":
        answer = "It is sunny in Paris."
        return StreamReply(text_chunks(answer)) if body.get("stream") else Reply(completion(answer))
    call = ("call_w", "get_weather", '{"city":"Paris"}')
    if body.get("stream"):
        return StreamReply(reasoning_chunks() + tool_call_chunks(call)[1:])
    return Reply(
        completion(
            None,
            tool_calls=[tool_call(*call)],
            finish_reason="tool_calls",
            reasoning_content=REASONING,
        )
    )


async def run_agent(model: OpenAIResponsesModel, streamed: bool) -> tuple[Any, list[str]]:
    """The weather agent's run and the summary deltas of its raw stream events."""
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return "sunny"

    agent = Agent(name="weather", instructions=INSTRUCTIONS, tools=[get_weather], model=model)
    if not streamed:
        return await Runner.run(agent, "Weather in Paris?"), []
    run = Runner.run_streamed(agent, "Weather in Paris?")
    deltas: list[str] = []
    async for event in run.stream_events():
        if event.type == "raw_response_event":
            assert_valid_stream_event(event.data.to_dict())
            if event.data.type == "response.reasoning_summary_text.delta":
                deltas.append(event.data.delta)
    return run, deltas


@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_agents_shows_and_returns_the_reasoning(
    client: AsyncOpenAI, fake: FakeUpstream, streamed: bool
) -> None:
    fake.responder = agent_reasons_then_calls
    model = OpenAIResponsesModel(model="fake-model", openai_client=client)
    run, deltas = await run_agent(model, streamed)
    assert run.final_output == "It is sunny in Paris."
    assert deltas == (list(PIECES) if streamed else [])
    thoughts = [item.raw_item for item in run.new_items if isinstance(item, ReasoningItem)]
    assert [([part.text for part in t.summary], t.content) for t in thoughts] == [
        ([REASONING], None)
    ]
    replayed = [m for m in fake.received[1].json()["messages"] if m["role"] == "assistant"]
    assert [m.get("reasoning_content") for m in replayed] == [REASONING]


def reasoning_blocks(message: BaseMessage) -> list[dict[str, Any]]:
    """LangChain's standard `reasoning` blocks, without their ids and bookkeeping."""
    return [
        {"type": "reasoning", "reasoning": block.get("reasoning")}
        for block in message.content_blocks
        if block["type"] == "reasoning"
    ]


def text_blocks(message: BaseMessage) -> list[str]:
    return [str(block["text"]) for block in message.content_blocks if block["type"] == "text"]


def langchain(diglot: TestServer) -> ChatOpenAI:
    return ChatOpenAI(
        model="fake-model",
        base_url=str(diglot.make_url("/v1")),
        api_key="sk-test",  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
    )


async def test_langchain_invoke_shows_the_reasoning_once(diglot: TestServer) -> None:
    message = await asyncio.to_thread(langchain(diglot).invoke, "2 + 2?")
    assert reasoning_blocks(message) == [{"type": "reasoning", "reasoning": REASONING}]
    assert text_blocks(message) == [ANSWER]


async def test_langchain_stream_shows_the_reasoning_once(diglot: TestServer) -> None:
    chunks = await asyncio.to_thread(lambda: list(langchain(diglot).stream("2 + 2?")))
    shown = [
        block["reasoning"]
        for piece in chunks
        for block in reasoning_blocks(piece)
        if block["reasoning"]
    ]
    assert shown == list(PIECES)
    whole = AIMessageChunk(content=[])
    for piece in chunks:
        whole += piece
    assert reasoning_blocks(whole) == [{"type": "reasoning", "reasoning": REASONING}]
    assert text_blocks(whole) == [ANSWER]


@pytest.mark.skipif(NODE is None, reason="node is not installed (.ci/run installs it)")
async def test_vercel_ai_sdk_shows_the_reasoning_once(diglot: TestServer) -> None:
    assert (JS / "node_modules").is_dir(), "run `npm ci --prefix tests/js` (.ci/run does)"
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(JS / "reasoning.mjs"),
        str(diglot.make_url("/v1")),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode(errors="replace")
    assert json.loads(out) == {
        "generate": {"reasoningText": REASONING, "text": ANSWER},
        "stream": {
            "reasoningText": REASONING,
            "reasoningDeltas": list(PIECES),
            "textDeltas": ["Fo", "ur."],
            "text": ANSWER,
        },
    }


@pytest.mark.skipif(CODEX is None and not os.environ.get("CI"), reason="Codex CLI is not installed")
async def test_codex_cli_shows_the_reasoning_once(diglot: TestServer, tmp_path: Path) -> None:
    assert CODEX is not None, "CI installs Codex CLI (npm @openai/codex); see .ci/run"
    env = codex_env(tmp_path, diglot.make_url("/v1"))
    process = await asyncio.create_subprocess_exec(
        CODEX,
        "exec",
        "--skip-git-repo-check",
        "--json",
        "What is 2 + 2?",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    transcript = output.decode(errors="replace")
    assert process.returncode == 0, transcript
    events = [json.loads(line) for line in transcript.splitlines() if line.startswith("{")]
    shown = [
        (e["item"]["type"], e["item"]["text"])
        for e in events
        if e["type"] == "item.completed" and e["item"]["type"] in ("reasoning", "agent_message")
    ]
    assert shown == [("reasoning", REASONING), ("agent_message", ANSWER)]
