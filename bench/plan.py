"""What the benchmark measures: targets, scenarios, request bodies and the limits they must meet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODEL = "bench-model"
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}

# CPU per request as a ratio to the bare relay, by target kind and by stream or not.
CPU_LIMITS = {
    ("translating", False): 1.5,
    ("translating", True): 2.0,
    ("passthrough", False): 1.2,
    ("passthrough", True): 1.2,
}
# CPU per streamed turn over WebSocket as a ratio to the same turn over SSE.
SOCKET_CPU_LIMIT = 1.0
SOCKET_CLIENTS = 8
# Latency a diglot target adds over going direct, one request at a time (c=1), non-stream.
ADDED_LATENCY_LIMITS_MS = {"p50": 1.0, "p99": 3.0}
# The former benchmark's settings, kept as extra rows beside the default configuration.
EXTRA_FLAGS = ("--store", "memory://", "--log-level", "warning")
EXTRA_LABEL = "memory store, warning logs"


@dataclass(frozen=True)
class Scenario:
    """One kind of request, with the upstream pacing and load it is measured under."""

    name: str
    stream: bool
    pacing: str  # the upstream it runs against: "spaced" events or "burst" (back to back)
    connections: int
    unloaded: bool  # also measured with one connection, sequentially


@dataclass
class Target:
    """One thing wrk can load: where it listens, which API its clients speak, whose CPU to read."""

    name: str
    kind: str  # direct | relay | passthrough | translating
    client_api: str
    upstream_api: str
    port: int
    pid: int
    skip: dict[str, str] = field(default_factory=dict)  # scenario name -> why it is not measured
    extra: bool = False  # diglot started with EXTRA_FLAGS: shown, never judged against the limits

    @property
    def path(self) -> str:
        return PATHS[self.client_api]


TOOL_PARAMETERS = {
    "type": "object",
    "properties": {"word": {"type": "string", "description": "The word to look up."}},
    "required": ["word"],
}
INSTRUCTIONS = "You are a concise assistant. Answer in plain prose."
QUESTION = "Summarise the plot of Hamlet in two sentences."
TOOL_DESCRIPTION = "Look a word up in the dictionary."


def request_body(api: str, stream: bool) -> dict[str, Any]:
    """A small realistic request in the client's shape: instructions, a question, one tool.

    A Responses request leaves `store` to its default (true), as the SDKs do, so diglot's
    default store keeps every translated response, as it would for such a client.
    """
    if api == "responses":
        message = {"type": "input_text", "text": QUESTION}
        return {
            "model": MODEL,
            "instructions": INSTRUCTIONS,
            "input": [{"type": "message", "role": "user", "content": [message]}],
            "tools": [
                {
                    "type": "function",
                    "name": "lookup",
                    "description": TOOL_DESCRIPTION,
                    "parameters": TOOL_PARAMETERS,
                    "strict": False,
                }
            ],
            "max_output_tokens": 256,
            "temperature": 0.2,
            "stream": stream,
        }
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": QUESTION},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": TOOL_DESCRIPTION,
                    "parameters": TOOL_PARAMETERS,
                },
            }
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body
