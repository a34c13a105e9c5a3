"""Codex CLI itself, when installed, runs a tool-calling turn through diglot to a chat upstream."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Reply,
    Script,
    StreamReply,
    chunk,
    text_chunks,
    tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.conftest import MakeServer

CODEX = shutil.which("codex")
pytestmark = pytest.mark.skipif(CODEX is None, reason="Codex CLI is not installed")

CONFIG = """\
model = "local-model"
model_provider = "local"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false
web_search = "disabled"
[model_providers.local]
name = "local"
base_url = "{base_url}"
wire_api = "responses"
env_key = "LOCAL_API_KEY"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"
[features]
plugins = false
remote_plugin = false
apps = false
"""


def codex_turns(received: Received) -> Script:
    """First a reasoning step and an exec_command call, then (tool result in) the answer."""
    if received.method != "POST":
        return Reply({"object": "list", "data": []})
    messages = received.json()["messages"]
    if messages[-1]["role"] == "tool":
        return StreamReply(
            [
                chunk({"role": "assistant", "reasoning_content": "Written."}),
                *text_chunks("Done.")[1:],
            ]
        )
    call = ("call_1", "exec_command", json.dumps({"cmd": "echo hi > out.txt"}))
    return StreamReply(
        [
            chunk({"role": "assistant", "reasoning_content": "I'll write it."}),
            *tool_call_chunks(call)[1:],
        ]
    )


async def test_codex_runs_a_tool_calling_turn(
    make_proxy_server: MakeServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    assert CODEX is not None
    fake.responder = codex_turns
    server = await make_proxy_server("chat")
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(CONFIG.format(base_url=server.make_url("/v1")))
    env = {**os.environ, "CODEX_HOME": str(home), "LOCAL_API_KEY": "local-key"}
    codex = await asyncio.create_subprocess_exec(
        CODEX,
        "exec",
        "--skip-git-repo-check",
        "--json",
        "-o",
        str(work / "last.txt"),
        "Write hi into out.txt",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(codex.communicate(), 180)
    assert codex.returncode == 0, output.decode()
    events = [json.loads(line) for line in output.splitlines() if line.startswith(b"{")]
    assert events[-1]["type"] == "turn.completed", output.decode()
    assert (work / "out.txt").read_text() == "hi\n"
    assert (work / "last.txt").read_text().strip() == "Done."
    posts = [r for r in fake.received if r.method == "POST"]
    assert len(posts) == 2
    first, second = (r.json() for r in posts)
    assert first["stream"] is True
    assert "exec_command" in [tool["function"]["name"] for tool in first["tools"]]
    assistant, tool = second["messages"][-2:]
    assert assistant["reasoning_content"] == "I'll write it."
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert (tool["role"], tool["tool_call_id"]) == ("tool", "call_1")
    assert posts[0].headers["Authorization"] == "Bearer local-key"
