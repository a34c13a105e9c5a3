"""`diglot demo`: a tiny chat-only backend on loopback with diglot in front of it."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from diglot.proxy.app import create_app, serve
from diglot.proxy.config import Config
from diglot.proxy.observability import configure_logging

MODEL = "diglot-demo"


def _last_user_text(messages: object) -> str:
    """What the user said last, from string or content-part messages."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
    return ""


def _reply(body: dict[str, Any]) -> str:
    said = _last_user_text(body.get("messages")).strip() or "nothing"
    return f"Hello from the diglot demo backend! You said: {said}"


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = len(orjson.dumps(body.get("messages"))) // 4
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunk(ident: str, created: int, delta: dict[str, Any], finish: str | None) -> bytes:
    chunk = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """A canned but well-formed chat completion, streamed word by word when asked."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        error = {
            "error": {"message": "Body must be a JSON object.", "type": "invalid_request_error"}
        }
        return web.Response(body=orjson.dumps(error), status=400, content_type="application/json")
    text, created, ident = _reply(body), int(time.time()), f"chatcmpl-demo{time.time_ns()}"
    if not body.get("stream"):
        completion = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(body, text),
        }
        return web.Response(body=orjson.dumps(completion), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk(ident, created, {"role": "assistant", "content": ""}, None))
    for index, word in enumerate(text.split(" ")):
        await response.write(
            _chunk(ident, created, {"content": (" " if index else "") + word}, None)
        )
    await response.write(_chunk(ident, created, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [],
            "usage": _usage(body, text),
        }
        await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def list_models(_: web.Request) -> web.Response:
    models = {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "diglot"}],
    }
    return web.Response(body=orjson.dumps(models), content_type="application/json")


def demo_backend() -> web.Application:
    """The chat-only backend: /v1/chat/completions and /v1/models."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    return app


def examples(port: int) -> str:
    """What `diglot demo` prints for the user to try."""
    base = f"http://127.0.0.1:{port}/v1"
    return f"""diglot is serving the Responses API on {base} (demo chat-only backend behind it).

Try it with curl:

  curl -s {base}/responses -H 'Content-Type: application/json' \\
    -d '{{"model": "{MODEL}", "input": "Hello, diglot!"}}'

or with the openai SDK (pip install openai):

  python3 - <<'PY'
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="demo")
  print(client.responses.create(model="{MODEL}", input="Hello, diglot!").output_text)
  with client.responses.stream(model="{MODEL}", input="Stream to me") as stream:
      for event in stream:
          if event.type == "response.output_text.delta":
              print(event.delta, end="", flush=True)
  print()
  PY

Press Ctrl+C to stop."""


def run_demo(port: int) -> int:
    """Start the backend on a free loopback port, then diglot on `port`; run until Ctrl+C."""
    configure_logging("console", "info")

    async def build() -> web.Application:
        backend = web.AppRunner(demo_backend(), access_log=None)
        await backend.setup()
        site = web.TCPSite(backend, "127.0.0.1", 0)
        await site.start()
        backend_port = backend.addresses[0][1]
        config = Config(
            upstream=f"http://127.0.0.1:{backend_port}/v1", upstream_api="chat", port=port
        )
        app = create_app(config)

        async def stop_backend(_: web.Application) -> None:
            await backend.cleanup()

        app.on_cleanup.append(stop_backend)
        return app

    serve(build(), "127.0.0.1", port, lambda _: print(examples(port), flush=True))
    return 0
