"""`diglot demo`: the demo backend on loopback with diglot in front of it, served as `diglot` is."""

from __future__ import annotations

import importlib.util
import secrets
import shlex
import socket
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from diglot.proxy.app import create_app
from diglot.proxy.config import Config
from diglot.proxy.demo_backend import MODEL, demo_backend
from diglot.proxy.observability import configure_logging
from diglot.proxy.service import run

HOST = "127.0.0.1"
DRAIN_SECONDS = 5.0  # Ctrl+C lets answers in flight finish, but a demo should stop promptly


def sdk_python() -> str | None:
    """This interpreter when the openai SDK is importable in it (so the example runs as printed)."""
    return sys.executable if importlib.util.find_spec("openai") is not None else None


def examples(url: str, python: str | None) -> str:
    """What `diglot demo` prints: a curl and an SDK example that paste and run as they are."""
    base = f"{url}/v1"
    interpreter = shlex.quote(python) if python else "python3"
    sdk = "the openai SDK" if python else "the openai SDK (first: pip install openai)"
    return f"""diglot is serving the Responses API on {base}.
Behind it is a demo backend that speaks only Chat Completions: it reasons aloud, calls the
first tool it is given and streams word by word, and diglot translates all of it.

Try it with curl:

curl -s {base}/responses -H 'Content-Type: application/json' \\
  -d '{{"model": "{MODEL}", "input": "Hello, diglot!"}}'

or with {sdk}:

{interpreter} - <<'PY'
from openai import OpenAI

client = OpenAI(base_url="{base}", api_key="demo")

# Text
print(client.responses.create(model="{MODEL}", input="Hello, diglot!").output_text)

# Streaming: the backend's reasoning, then its answer, as the words arrive
with client.responses.stream(model="{MODEL}", input="Stream to me") as stream:
    for event in stream:
        if event.type == "response.output_item.added":
            print(f"[{{event.item.type}}] ", end="")
        elif event.type in (
            "response.reasoning_text.delta",
            "response.reasoning_summary_text.delta",
            "response.output_text.delta",
        ):
            print(event.delta, end="", flush=True)
        elif event.type == "response.output_item.done":
            print()

# A tool call, then its result sent back for the answer
tools = [{{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now",
    "parameters": {{
        "type": "object",
        "properties": {{"city": {{"type": "string"}}}},
        "required": ["city"],
    }},
}}]
asked = client.responses.create(
    model="{MODEL}", input="What is the weather in Paris?", tools=tools
)
call = next(item for item in asked.output if item.type == "function_call")
print(f"function call: {{call.name}}({{call.arguments}})")
result = {{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 18 C"}}
answer = client.responses.create(
    model="{MODEL}", previous_response_id=asked.id, input=[result], tools=tools
)
print(answer.output_text)
PY

Press Ctrl+C to stop."""


def demo_app(pace: float) -> web.Application:
    """diglot in front of the demo backend, which starts and stops with it.

    The backend's socket is bound here, so its address is known before diglot is configured;
    nothing is written to disk (responses stay in memory, the seal key is made up).
    """
    backend = socket.socket()
    backend.bind((HOST, 0))
    port = backend.getsockname()[1]
    config = Config(
        upstream=f"http://{HOST}:{port}/v1",
        upstream_api="chat",
        store="memory://",
        seal_key=secrets.token_hex(16),
        drain_timeout=DRAIN_SECONDS,
    )
    app = create_app(config)

    async def run_backend(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(demo_backend(pace), access_log=None)
        await runner.setup()
        await web.SockSite(runner, backend).start()
        yield
        await runner.cleanup()

    app.cleanup_ctx.append(run_backend)
    return app


def run_demo(port: int, pace: float) -> None:
    """Serve the demo on `port` until Ctrl+C or SIGTERM; CannotListen when the port is taken."""
    configure_logging("console", "info")
    app = demo_app(pace)
    python = sdk_python()
    run(app, HOST, port, DRAIN_SECONDS, lambda url: print(examples(url, python), flush=True))
