"""The real Codex CLI runs a tool-calling turn through diglot against a chat-only upstream."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from fixtures.fake_chat_upstream import (
    FakeUpstream,
    Received,
    Script,
    StreamReply,
    chunk,
    text_chunks,
    tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.conftest import MakeServer

CODEX = shutil.which("codex")
pytestmark = pytest.mark.skipif(
    CODEX is None and not os.environ.get("CI"), reason="Codex CLI is not installed"
)

CONFIG = """
model = "gpt-5-codex"
model_provider = "local"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false
web_search = "disabled"
[model_providers.local]
name = "local"
base_url = "{base_url}"
wire_api = "responses"
env_key = "LOCAL_API_KEY"
request_max_retries = 0
stream_max_retries = 0
{provider_extra}
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


def codex_env(tmp_path: Path, base_url: object, provider_extra: str = "") -> dict[str, str]:
    """A Codex home in tmp_path whose provider is diglot at base_url; the environment naming it."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        CONFIG.format(base_url=base_url, provider_extra=provider_extra)
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "LOCAL_API_KEY": "local-key",
    }


def shell_then_answer(received: Received) -> Script:
    """First turn: reason and run a command; once its output is back, answer with it."""
    messages = received.json()["messages"]
    if messages[-1]["role"] == "tool":
        output = messages[-1]["content"]
        word = "diglot-ok" if "diglot-ok" in output else "missing"
        return StreamReply(text_chunks("The command printed ", word, "."))
    return StreamReply(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"reasoning_content": "Run the command."}),
            *tool_call_chunks(("call_1", "exec_command", json.dumps({"cmd": "echo diglot-ok"})))[
                1:
            ],
        ]
    )


async def test_codex_cli_runs_a_tool_call_through_diglot(
    make_proxy_server: MakeServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.responder = shell_then_answer
    server = await make_proxy_server("chat")
    transcript = await run_codex(tmp_path, codex_env(tmp_path, server.make_url("/v1")))
    events = [json.loads(line) for line in transcript.splitlines() if line.startswith("{")]
    commands = [e["item"] for e in events if e.get("item", {}).get("type") == "command_execution"]
    assert commands[-1]["aggregated_output"] == "diglot-ok\n"
    assert events[-1]["type"] == "turn.completed"
    assert len(fake.received) == 2
    follow_up = fake.received[1].json()["messages"]
    assert follow_up[-2]["reasoning_content"] == "Run the command."
    assert follow_up[-2]["tool_calls"][0]["id"] == "call_1"
    assert follow_up[-1]["tool_call_id"] == "call_1"
    assert fake.received[0].headers["Authorization"] == "Bearer local-key"


async def test_codex_cli_runs_a_tool_session_over_websocket(
    make_proxy_server: MakeServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.responder = shell_then_answer
    server = await make_proxy_server("chat")
    env = codex_env(tmp_path, server.make_url("/v1"), "supports_websockets = true")
    with capture_logs() as logs:
        await run_codex(tmp_path, env)
    lines = [(line["method"], line["status"]) for line in logs if line["event"] == "request"]
    assert ("POST", 200) not in lines, "Codex fell back to HTTP"
    turns = [line for line in logs if line.get("transport") == "websocket"]
    assert [line["status"] for line in turns] == [200] * len(turns)
    assert len(turns) >= 3  # the warm-up (generate: false), the command, the answer
    assert len(fake.received) == 2  # the warm-up never reached the upstream
    follow_up = fake.received[1].json()["messages"]
    assert follow_up[0]["role"] == "system"  # the whole history, kept by the connection
    assert follow_up[-2]["tool_calls"][0]["id"] == "call_1"
    assert follow_up[-1]["tool_call_id"] == "call_1"


async def run_codex(tmp_path: Path, env: dict[str, str]) -> str:
    """`codex exec` of the echo task in a fresh folder; its JSON transcript, once it passed."""
    assert CODEX is not None, "CI installs Codex CLI (npm @openai/codex); see .ci/run"
    work = tmp_path / "work"
    work.mkdir()
    process = await asyncio.create_subprocess_exec(
        CODEX,
        "exec",
        "--skip-git-repo-check",
        "--json",
        "-o",
        str(work / "last.txt"),
        "Run echo diglot-ok",
        cwd=work,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    transcript = output.decode(errors="replace")
    assert process.returncode == 0, transcript
    assert (work / "last.txt").read_text().strip() == "The command printed diglot-ok."
    return transcript
