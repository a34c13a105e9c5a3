"""A recorded Codex CLI session replayed through diglot over a chat-only upstream.

`fixtures/codex_session.json` holds the first two turns as Codex CLI 0.169 sent them (long texts
abridged, a custom `apply_patch` and a `web_search` tool added). The third turn is built the way
Codex builds it: the previous input, diglot's output items echoed back, and the tool's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fixtures.fake_chat_upstream import (
    FakeUpstream,
    StreamReply,
    chunk,
    text_chunks,
    tool_call_chunks,
    usage_chunk,
)
from tests.test_e2e_responses_over_chat import sse_events
from tests.validate import assert_valid_stream

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.test_utils import TestClient

    from tests.conftest import MakeProxy

SESSION = json.loads((Path(__file__).parent.parent / "fixtures" / "codex_session.json").read_text())
TURNS: list[dict[str, Any]] = SESSION["turns"]
PATCH = "*** Begin Patch\n*** Update File: hello.txt\n@@\n-hello\n+hello, diglot\n*** End Patch\n"
PATCHED = "Success. Updated the following files:\nM hello.txt\n"
UPSTREAM_KEYS = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "prompt_cache_key",
    "stream",
    "stream_options",
}


def reasoning(*pieces: str) -> list[dict[str, Any] | bytes]:
    parts: list[dict[str, Any] | bytes] = [chunk({"role": "assistant", "content": None})]
    return parts + [chunk({"reasoning_content": piece}) for piece in pieces]


def custom_call_chunks(call_id: str, name: str, arguments: str) -> list[dict[str, Any] | bytes]:
    """A custom tool call as a chat backend streams it: a function call with an `input` string."""
    header = {"index": 0, "id": call_id, "type": "function", "function": {"name": name}}
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    fragments = [{"index": 0, "function": {"arguments": piece}} for piece in pieces]
    return [
        chunk({"tool_calls": [header]}),
        *(chunk({"tool_calls": [fragment]}) for fragment in fragments),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]


async def turn(
    proxy: TestClient[web.Request, web.Application], headers: dict[str, str], body: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    resp = await proxy.post(
        "/v1/responses", data=orjson.dumps(body), headers={**headers, "Authorization": "Bearer x"}
    )
    assert resp.status == 200, await resp.text()
    events = sse_events(await resp.read())
    return events, assert_valid_stream(events)


def echoed(item: dict[str, Any]) -> dict[str, Any]:
    """Codex sends its reasoning items back without their status and with `content` null."""
    if item["type"] == "reasoning":
        kept = {key: value for key, value in item.items() if key != "status"}
        return {**kept, "content": None}
    return item


async def test_recorded_codex_session_replays_through_diglot(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(
        StreamReply(
            reasoning("I should look ", "at two files.")
            + tool_call_chunks(
                ("call_a", "exec_command", '{"cmd": "echo one"}'),
                ("call_b", "exec_command", '{"cmd": "echo two"}'),
            )[1:]
        ),
        StreamReply(
            reasoning("One patch ", "will do.")
            + custom_call_chunks("call_p", "apply_patch", json.dumps({"input": PATCH}))
        ),
        StreamReply(text_chunks("Patched ", "hello.txt.")),
    )
    proxy = await make_proxy("chat")

    events, first = await turn(proxy, TURNS[0]["headers"], TURNS[0]["request"])
    assert [item["type"] for item in first["output"]] == [
        "reasoning",
        "function_call",
        "function_call",
    ]
    assert first["output"][0]["summary"] == [
        {"type": "summary_text", "text": "I should look at two files."}
    ]
    assert "content" not in first["output"][0]
    shown = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert shown == ["I should look ", "at two files."]
    assert not [e for e in events if e["type"].startswith("response.reasoning_text.")]
    assert [(i["call_id"], i["arguments"]) for i in first["output"][1:]] == [
        ("call_a", '{"cmd": "echo one"}'),
        ("call_b", '{"cmd": "echo two"}'),
    ]
    sent = fake.received[0].json()
    assert set(sent) == UPSTREAM_KEYS
    assert sent["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "user"]
    names = [tool["function"]["name"] for tool in sent["tools"]]
    assert names == [
        "exec_command",
        "write_stdin",
        "multi_agent_v1__close_agent",
        "multi_agent_v1__resume_agent",
        "apply_patch",
    ]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name) for name in names)
    assert fake.received[0].headers["session-id"] == TURNS[0]["headers"]["session-id"]

    events, second = await turn(proxy, TURNS[1]["headers"], TURNS[1]["request"])
    sent = fake.received[1].json()
    assert sent["messages"][4:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should look at two files.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd": "echo one"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd": "echo two"}'},
                },
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_a",
            "content": TURNS[1]["request"]["input"][7]["output"],
        },
        {
            "role": "tool",
            "tool_call_id": "call_b",
            "content": TURNS[1]["request"]["input"][8]["output"],
        },
    ]
    custom = second["output"][1]
    assert [second["output"][0]["type"], custom["type"]] == ["reasoning", "custom_tool_call"]
    assert (custom["name"], custom["call_id"], custom["input"]) == ("apply_patch", "call_p", PATCH)
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == PATCH
    assert [e["input"] for e in events if e["type"] == "response.custom_tool_call_input.done"] == [
        PATCH
    ]

    third_input = [
        *TURNS[1]["request"]["input"],
        *(echoed(item) for item in second["output"]),
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": PATCHED},
    ]
    events, third = await turn(
        proxy, TURNS[1]["headers"], {**TURNS[1]["request"], "input": third_input}
    )
    assert third["output"][0]["content"][0]["text"] == "Patched hello.txt."
    sent = fake.received[2].json()
    assert sent["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "One patch will do.",
            "tool_calls": [
                {
                    "id": "call_p",
                    "type": "function",
                    "function": {
                        "name": "apply_patch",
                        "arguments": orjson.dumps({"input": PATCH}).decode(),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_p", "content": PATCHED},
    ]
