"""The command line: exit codes, one-line errors, `python -m diglot` and `diglot demo`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import pytest

from diglot.proxy.cli import main

ENV = {key: value for key, value in os.environ.items() if not key.startswith("DIGLOT_")}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diglot", *args],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        ([], {}, "upstream"),
        (["--upstream", "http://h/v1"], {}, "upstream_api"),
        (["--upstream", "http://h/v1", "--upstream-api", "soap"], {}, "upstream_api"),
        (["--upstream", "http://h/v1", "--upstream-api", "chat", "--port", "x"], {}, "port"),
        (["--upstream-api", "chat"], {"DIGLOT_UPSTREAM": "nope"}, "upstream"),
    ],
)
def test_invalid_config_exits_2_with_one_line(
    args: list[str], env: dict[str, str], setting: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"diglot: error: invalid setting {setting}: ")


def test_unknown_option_exits_2_with_one_line() -> None:
    result = run("--upstream", "http://h/v1", "--frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "diglot: error: unrecognized arguments: --frobnicate"
    ]


def test_help_exits_0_and_lists_every_option() -> None:
    result = run("--help")
    assert result.returncode == 0
    for option in ("--upstream-api", "--strict", "--think-tags", "--max-body-bytes", "--config"):
        assert option in result.stdout


def test_main_returns_2_on_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--upstream", "http://h/v1", "--upstream-api", "chat", "--read-timeout", "0"]) == 2
    assert capsys.readouterr().err == (
        "diglot: error: invalid setting read_timeout: "
        "must be greater than 0: give seconds such as 10 or 2.5\n"
    )


async def test_demo_serves_the_responses_api_over_its_chat_backend(free_port: int) -> None:
    port = free_port
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "diglot",
        "demo",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=ENV,
    )
    try:
        assert demo.stdout is not None
        banner = await asyncio.wait_for(demo.stdout.readuntil(b"Press Ctrl+C to stop."), 30)
        assert f"http://127.0.0.1:{port}/v1/responses".encode() in banner
        assert b"from openai import OpenAI" in banner
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/responses"
            async with session.post(url, json={"model": "diglot-demo", "input": "hi"}) as resp:
                assert resp.status == 200
                body = await resp.json()
            async with session.get(f"http://127.0.0.1:{port}/v1/models") as resp:
                models = await resp.json()
        assert body["status"] == "completed"
        assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
        assert models["data"][0]["id"] == "diglot-demo"
    finally:
        demo.terminate()
        assert await asyncio.wait_for(demo.wait(), 30) is not None
