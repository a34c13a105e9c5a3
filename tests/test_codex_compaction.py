"""The real Codex CLI compacts remotely through diglot, mid-task, over a chat-only upstream.

Codex compacts remotely only for a provider named "OpenAI" (or "Azure"), when the usage diglot
reports passes its `model_auto_compact_token_limit`: it sends a turn ending in a
`compaction_trigger`, then goes on from the developer and user messages and the compaction item.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from diglot.translators.compaction import DEFAULT_PROMPT, SUMMARY_PREFIX
from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    Script,
    StreamReply,
    chunk,
    completion,
    text_chunks,
    tool_call_chunks,
    usage,
    usage_chunk,
)
from tests.test_codex_cli import codex_env, pytestmark, run_codex

if TYPE_CHECKING:
    from tests.conftest import MakeServer

__all__ = ["pytestmark"]

SUMMARY = "The user asked to run `echo diglot-ok`; it ran and printed diglot-ok. Next: report it."


def compacting_backend(received: Received) -> Script:
    """A command whose answer reports a huge context; the summary when asked; then the answer."""
    messages = received.json()["messages"]
    last = messages[-1]["content"]
    if last == DEFAULT_PROMPT:
        return Reply(completion(SUMMARY))
    if any(str(message["content"]).startswith(SUMMARY_PREFIX) for message in messages):
        return StreamReply(text_chunks("The command printed ", "diglot-ok", "."))
    call = tool_call_chunks(("call_1", "exec_command", json.dumps({"cmd": "echo diglot-ok"})))
    return StreamReply(
        [chunk({"role": "assistant", "content": None}), *call[1:-1], usage_chunk(usage(90_000, 20))]
    )


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_codex_compacts_through_diglot_mid_task(
    make_proxy_server: MakeServer, fake: FakeUpstream, tmp_path: Path, transport: str
) -> None:
    fake.responder = compacting_backend
    server = await make_proxy_server("chat")
    sockets = "supports_websockets = true" if transport == "websocket" else ""
    env = codex_env(tmp_path, server.make_url("/v1"), sockets)
    config = Path(env["CODEX_HOME"]) / "config.toml"
    text = config.read_text().replace('name = "local"', 'name = "OpenAI"')
    config.write_text("model_auto_compact_token_limit = 50000\n" + text)
    with capture_logs() as logs:
        await run_codex(tmp_path, env)
    turns = [line for line in logs if line["event"] == "request" and line["status"] == 200]
    assert {line.get("transport", "http") for line in turns} == {transport}
    asked = [request.json()["messages"] for request in fake.received]
    summary_requests = [messages for messages in asked if messages[-1]["content"] == DEFAULT_PROMPT]
    assert len(summary_requests) == 1
    assert summary_requests[0][-2]["role"] == "tool"  # the command's output, compacted
    after = asked[-1]
    assert after[-1] == {"role": "user", "content": SUMMARY_PREFIX + SUMMARY}
    assert not any(message["role"] in ("assistant", "tool") for message in after)
