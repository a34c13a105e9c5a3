"""A newcomer's first minutes: `diglot demo` shows everything and its example runs as printed;
a port already taken is one line and exit 2; Ctrl+C and SIGTERM end the demo cleanly."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from diglot.proxy.demo import examples, sdk_python
from diglot.proxy.demo_backend import Answer, ToolCall, answer, demo_backend

ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith("DIGLOT_") and not key.lower().endswith("_proxy")
}
WAIT = 60  # seconds: a bound for each wait, never a synchronisation
BANNER_END = b"Press Ctrl+C to stop.\n"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "units"],
        },
    },
}
PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL_REASONING = (
    'The user asked "What is the weather in Paris?". The get_weather tool can tell, so I will '
    "call it."
)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port this test holds open, listening, for as long as the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def diglot_args(port: int, state: Path) -> list[str]:
    upstream = ["--upstream", "http://127.0.0.1:9/v1", "--upstream-api", "chat"]
    return [*upstream, "--store", "memory://", "--state-dir", str(state), "--port", str(port)]


@pytest.mark.parametrize("demo", [False, True], ids=["diglot", "diglot demo"])
def test_a_port_in_use_is_one_line_and_exit_2(demo: bool, taken_port: int, tmp_path: Path) -> None:
    args = ["demo", "--port", str(taken_port)] if demo else diglot_args(taken_port, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "diglot", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"diglot: error: cannot listen on 127.0.0.1:{taken_port}: address already in use\n"
    )


@pytest.mark.parametrize("port", ["70000", "x"])
def test_a_bad_demo_port_is_the_port_settings_one_line(port: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "diglot", "demo", "--port", port],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "diglot demo: error: argument --port: invalid setting port: "
        f"'{port}' is not a port: give a whole number from 0 to 65535\n"
    )


async def test_diglot_logs_serving_once_bound_and_runs_on_uvloop(
    free_port: int, tmp_path: Path
) -> None:
    """Nothing claims to listen before the bind; uvloop serves where it is installed."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "diglot", *diglot_args(free_port, tmp_path)),
        *("--log-format", "json"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stderr is not None
        first = orjson.loads(await asyncio.wait_for(process.stderr.readline(), WAIT))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert {key: first[key] for key in ("event", "url", "upstream", "upstream_api", "loop")} == {
        "event": "serving",
        "url": f"http://127.0.0.1:{free_port}",
        "upstream": "http://127.0.0.1:9/v1",
        "upstream_api": "chat",
        "loop": loop,
    }


class Demo:
    """`python -m diglot demo` as a newcomer runs it, with its banner read up to its last line."""

    def __init__(self, process: asyncio.subprocess.Process, banner: str) -> None:
        self.process = process
        self.banner = banner

    def block(self, first: str, last: str) -> str:
        """The banner's lines from the one starting with `first` to the one equal to `last`."""
        lines = self.banner.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(first))
        end = next(i for i, line in enumerate(lines) if i > start and line.startswith(last))
        return "\n".join(lines[start : end + 1]) + "\n"


@pytest.fixture
async def demo(free_port: int) -> AsyncIterator[Demo]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "diglot", "demo", "--port", str(free_port), "--pace", "0"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readuntil(BANNER_END), WAIT)
        yield Demo(process, banner.decode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def bash(script: str) -> tuple[int, str, str]:
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    out, err = await asyncio.wait_for(shell.communicate(), WAIT)
    assert shell.returncode is not None
    return shell.returncode, out.decode(), err.decode()


async def test_the_printed_sdk_example_pastes_and_runs(demo: Demo, free_port: int) -> None:
    """Text, reasoning and text streamed, a tool call and the answer using the tool's result."""
    example = demo.block(f"{shlex.quote(sys.executable)} - <<'PY'", "PY")
    assert example.endswith("\nPY\n")  # at column 0, or the here-document never ends
    assert f'base_url="http://127.0.0.1:{free_port}/v1"' in example
    status, out, err = await bash(example)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "Hello from the diglot demo backend! You said: Hello, diglot!",
        '[reasoning] The user said "Stream to me". Saying it back is the whole job here.',
        "[message] Hello from the diglot demo backend! You said: Stream to me",
        'function call: get_weather({"city": "Paris"})',
        "According to get_weather: Sunny, 18 C",
    ]


async def test_the_printed_curl_example_pastes_and_runs(demo: Demo, free_port: int) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    example = demo.block("curl ", "  -d ")
    assert f"http://127.0.0.1:{free_port}/v1/responses" in example
    status, out, err = await bash(example)
    assert (status, err) == (0, "")
    body = json.loads(out)
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][1]["content"][0]["text"] == (
        "Hello from the diglot demo backend! You said: Hello, diglot!"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_demo_stops_cleanly_on_ctrl_c_and_sigterm(demo: Demo, signum: int) -> None:
    demo.process.send_signal(signum)
    assert demo.process.stderr is not None
    err = await asyncio.wait_for(demo.process.stderr.read(), WAIT)
    assert await asyncio.wait_for(demo.process.wait(), WAIT) == 0
    assert re.findall(r"(?m)^\S+ \[\w+ *\] (\w+)", err.decode()) == [
        "serving",
        "draining",
        "stopped",
    ]


def test_without_the_sdk_the_example_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert sdk_python() is None
    text = examples("http://127.0.0.1:8080", None)
    assert "or with the openai SDK (first: pip install openai):\n\npython3 - <<'PY'\n" in text


def test_with_the_sdk_the_example_runs_on_this_interpreter() -> None:
    assert sdk_python() == sys.executable  # the tests' interpreter has openai
    text = examples("http://127.0.0.1:8080", "/opt/my python/bin/python")
    assert "or with the openai SDK:\n\n'/opt/my python/bin/python' - <<'PY'\n" in text


# The demo backend on its own: what each answer holds, whole and streamed.


@pytest.fixture
async def backend(aiohttp_client: Any) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = await aiohttp_client(demo_backend(0))
    return client


def tool_call_id(reply: Answer) -> str:
    assert reply.tool_call is not None
    return reply.tool_call.id


def test_a_request_with_tools_gets_a_call_to_the_first_function() -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    reply = answer({"messages": PARIS, "tools": [{"type": "custom"}, WEATHER, other]})
    assert reply == Answer(
        reasoning=CALL_REASONING,
        tool_call=ToolCall(
            id=tool_call_id(reply),
            name="get_weather",
            arguments='{"city": "Paris", "units": "celsius"}',
        ),
    )
    assert tool_call_id(reply).startswith("call_")


def test_tool_choice_none_is_answered_in_text_and_a_named_function_is_called() -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    tools = [WEATHER, other]
    unused = answer({"messages": PARIS, "tools": tools, "tool_choice": "none"})
    assert (unused.content, unused.tool_call) == (
        "Hello from the diglot demo backend! You said: What is the weather in Paris?",
        None,
    )
    named = {"type": "function", "function": {"name": "other"}}
    chosen = answer({"messages": PARIS, "tools": tools, "tool_choice": named}).tool_call
    assert chosen is not None and (chosen.name, chosen.arguments) == ("other", "{}")


@pytest.mark.parametrize(
    ("schema", "arguments"),
    [
        (
            {"properties": {"q": {"type": "string"}, "n": {"type": "integer"}}},
            {"q": "Paris", "n": 1},  # nothing required: every property
        ),
        (
            {
                "properties": {
                    "where": {
                        "type": "object",
                        "properties": {"city": {"type": ["null", "string"]}},
                    },
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "exact": {"type": "boolean"},
                    "scale": {"type": "number", "default": 2},
                    "mode": {"anyOf": [{"const": "fast"}, {"type": "string"}]},
                },
                "required": ["where", "tags", "exact", "scale", "mode", "missing", ["x"]],
            },
            {
                "where": {"city": "Paris"},
                "tags": ["Paris"],
                "exact": True,
                "scale": 2,
                "mode": "fast",
            },
        ),
        ("not a schema", {}),
        ({"properties": {"odd": {"type": {"not": "a name"}}}}, {"odd": "Paris"}),
    ],
)
def test_arguments_are_made_from_the_schema_and_the_users_words(
    schema: object, arguments: dict[str, Any]
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    call = answer({"messages": PARIS, "tools": [tool]}).tool_call
    assert call is not None and json.loads(call.arguments) == arguments


def test_a_schema_nested_without_end_is_followed_only_so_deep() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(2000):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    call = answer({"messages": PARIS, "tools": [tool]}).tool_call
    assert call is not None and call.arguments == '{"x": ' * 9 + '"Paris"' + "}" * 9


def test_a_tool_result_is_answered_in_text_that_uses_it() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    messages = [
        *PARIS,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
    ]
    assert answer({"messages": messages, "tools": [WEATHER]}) == Answer(
        reasoning="get_weather has answered, so I can pass on what it said.",
        content="According to get_weather: Sunny",
    )


async def test_a_whole_answer_is_one_chat_completion(
    backend: TestClient[web.Request, web.Application],
) -> None:
    resp = await backend.post("/v1/chat/completions", json={"messages": PARIS, "tools": [WEATHER]})
    assert resp.status == 200
    body = await resp.json()
    call_id = body["choices"][0]["message"]["tool_calls"][0]["id"]
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": CALL_REASONING,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "units": "celsius"}',
                        },
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ]
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 19}


async def stream(
    backend: TestClient[web.Request, web.Application], body: dict[str, Any]
) -> list[Any]:
    resp = await backend.post("/v1/chat/completions", json={**body, "stream": True})
    assert (resp.status, resp.content_type) == (200, "text/event-stream")
    text = (await resp.read()).decode()
    assert text.endswith("data: [DONE]\n\n")
    return [orjson.loads(line[6:]) for line in text.split("\n\n") if line[6:] not in ("", "[DONE]")]


async def test_a_stream_thinks_then_calls_word_by_word_and_ends_with_usage(
    backend: TestClient[web.Request, web.Application],
) -> None:
    body = {"messages": PARIS, "tools": [WEATHER], "stream_options": {"include_usage": True}}
    chunks = await stream(backend, body)
    got = [chunk["choices"][0]["delta"] for chunk in chunks[:-2]]
    assert got[0] == {"role": "assistant", "content": ""}
    thinking = [delta["reasoning_content"] for delta in got[1:20]]
    assert thinking[:3] == ["The", " user", " asked"] and "".join(thinking) == CALL_REASONING
    header, *pieces = [delta["tool_calls"][0] for delta in got[20:]]
    assert header == {
        "index": 0,
        "id": header["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(piece.keys() == {"index", "function"} for piece in pieces)
    arguments = [piece["function"]["arguments"] for piece in pieces]
    assert arguments[:2] == ['{"city": "Pa', 'ris", "units']
    assert "".join(arguments) == '{"city": "Paris", "units": "celsius"}'
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 19}


async def test_a_stream_without_include_usage_has_no_usage_chunk(
    backend: TestClient[web.Request, web.Application],
) -> None:
    chunks = await stream(backend, {"messages": PARIS})
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all("usage" not in chunk for chunk in chunks)
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "Hello from the diglot demo backend! You said: What is the weather in Paris?"


async def test_a_stream_goes_at_the_pace_asked_for(aiohttp_client: Any) -> None:
    """A lower bound only: sleeping never takes less than asked."""
    pace = 0.01
    client = await aiohttp_client(demo_backend(pace))
    started = time.monotonic()
    chunks = await stream(client, {"messages": PARIS})
    assert time.monotonic() - started >= pace * (len(chunks) - 1)


async def test_a_body_that_is_not_an_object_is_a_400_in_openais_shape(
    backend: TestClient[web.Request, web.Application],
) -> None:
    resp = await backend.post("/v1/chat/completions", data=b"[1, 2]")
    assert resp.status == 400
    assert await resp.json() == {
        "error": {
            "message": "Body must be a JSON object.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
