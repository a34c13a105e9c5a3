"""A fake OpenAI upstream cheap enough to never be the bottleneck: raw asyncio, pre-encoded bytes.

Serves POST /v1/chat/completions and POST /v1/responses (non-stream, or an SSE stream of exactly
STREAM_EVENTS events when the body asks for `"stream": true`) and GET /v1/models.
Run: python -m bench.upstream --port N [--event-gap-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import orjson

STREAM_EVENTS = 100
MODEL = "bench-model"
CREATED = 1763900000
CHAT_ID = "chatcmpl-bench0001"
RESPONSE_ID = "resp_bench0001"
MESSAGE_ID = "msg_bench0001"

_SENTENCE = (
    "Hamlet, prince of Denmark, learns from his father's ghost that his uncle Claudius murdered "
    "the king to seize the throne and marry Queen Gertrude. Torn between doubt and duty, Hamlet "
    "feigns madness, stages a play to test his uncle's guilt, and accidentally kills Polonius, "
    "which drives Ophelia to despair; at last a poisoned duel leaves Hamlet, Laertes, Gertrude "
    "and Claudius dead, and Fortinbras arrives to claim the crown. Café déjà vu."
)


def text_deltas(count: int) -> list[str]:
    """Small word-sized deltas, like a tokenizer's, that join back into one paragraph."""
    words = _SENTENCE.split(" ")
    pieces = [words[0]] + [" " + word for word in words[1:]]
    while len(pieces) < count:
        pieces = pieces + pieces
    return pieces[:count]


def _usage_chat() -> dict[str, object]:
    return {
        "prompt_tokens": 42,
        "completion_tokens": 97,
        "total_tokens": 139,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _usage_responses() -> dict[str, object]:
    return {
        "input_tokens": 42,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 97,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 139,
    }


def chat_completion(text: str) -> dict[str, object]:
    """A non-stream chat.completion answering with `text`."""
    return {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage_chat(),
        "system_fingerprint": None,
    }


def chat_chunks() -> list[dict[str, object]]:
    """STREAM_EVENTS chunks: role, content deltas, finish_reason, then the usage chunk."""

    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {
            "id": CHAT_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in text_deltas(STREAM_EVENTS - 3)]
    chunks.append(chunk({}, "stop"))
    last = chunk({})
    last["choices"] = []
    last["usage"] = _usage_chat()
    chunks.append(last)
    return chunks


def _message_item(text: str, status: str) -> dict[str, object]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def response_object(text: str | None) -> dict[str, object]:
    """A Responses `response`: completed with `text`, or in progress when `text` is None."""
    done = text is not None
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if done else "in_progress",
        "completed_at": CREATED + 1 if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": "You are a concise assistant.",
        "max_output_tokens": 256,
        "max_tool_calls": None,
        "model": MODEL,
        "output": [_message_item(text or "", "completed")] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 0.2,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage_responses() if done else None,
        "user": None,
        "metadata": {},
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "background": False,
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def response_events() -> list[dict[str, object]]:
    """STREAM_EVENTS Responses events for one message, in the OpenAI API's grammar."""
    deltas = text_deltas(STREAM_EVENTS - 8)
    text = "".join(deltas)
    where = {"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    full_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": response_object(None)},
        {"type": "response.in_progress", "response": response_object(None)},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _message_item(text, "in_progress"),
        },
        {"type": "response.content_part.added", **where, "part": empty_part},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        for piece in deltas
    ]
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": full_part},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": _message_item(text, "completed"),
        },
        {"type": "response.completed", "response": response_object(text)},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def _head(status: str, content_type: bytes, length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\n"
        + framing
        + b"\r\nx-request-id: req_bench\r\n\r\n"
    )


def _whole(body: bytes, status: str = "200 OK") -> bytes:
    return _head(status, b"application/json", len(body)) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse_chunks(events: list[bytes]) -> list[bytes]:
    return [_chunk(event) for event in events] + [b"0\r\n\r\n"]


class Replies:
    """Every answer pre-encoded once, as the exact bytes written to the socket."""

    def __init__(self) -> None:
        chat_text = "".join(text_deltas(STREAM_EVENTS - 3))
        self.chat = _whole(orjson.dumps(chat_completion(chat_text)))
        self.responses = _whole(
            orjson.dumps(response_object("".join(text_deltas(STREAM_EVENTS - 8))))
        )
        self.models = _whole(
            orjson.dumps(
                {
                    "object": "list",
                    "data": [
                        {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}
                    ],
                }
            )
        )
        self.not_found = _whole(
            b'{"error":{"message":"no such route","type":"invalid_request_error",'
            b'"param":null,"code":null}}',
            "404 Not Found",
        )
        sse_head = _head("200 OK", b"text/event-stream", None)
        chat_events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chat_chunks()]
        chat_events.append(b"data: [DONE]\n\n")
        self.chat_stream = [sse_head, *_sse_chunks(chat_events)]
        response_frames = [
            b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
            for event in response_events()
        ]
        self.responses_stream = [sse_head, *_sse_chunks(response_frames)]

    def pick(self, method: bytes, path: bytes, body: bytes) -> bytes | list[bytes]:
        """The reply to one request: whole bytes, or a list of stream writes."""
        path = path.split(b"?", 1)[0].rstrip(b"/")
        if method == b"GET" and path.endswith(b"/models"):
            return self.models
        if method != b"POST":
            return self.not_found
        streaming = b'"stream"' in body and orjson.loads(body).get("stream") is True
        if path.endswith(b"/chat/completions"):
            return self.chat_stream if streaming else self.chat
        if path.endswith(b"/responses"):
            return self.responses_stream if streaming else self.responses
        return self.not_found


class Ticker:
    """Advances every open stream by one event per tick, like tokens arriving from a model."""

    def __init__(self, gap: float) -> None:
        self._gap = gap
        self._streams: dict[UpstreamProtocol, list[bytes]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, protocol: UpstreamProtocol, writes: list[bytes]) -> None:
        self._streams[protocol] = list(reversed(writes))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def drop(self, protocol: UpstreamProtocol) -> None:
        self._streams.pop(protocol, None)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            for protocol, writes in list(self._streams.items()):
                protocol.write(writes.pop())
                if not writes:
                    self.drop(protocol)
                    protocol.stream_done()
            if not self._streams:
                self._wake.clear()
            await asyncio.sleep(self._gap)


class UpstreamProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive server for one connection; requests with Content-Length or chunked."""

    def __init__(self, replies: Replies, ticker: Ticker) -> None:
        self._replies = replies
        self._ticker = ticker
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._streaming = False
        self._queue: list[bytes | list[bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._ticker.drop(self)

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def stream_done(self) -> None:
        self._streaming = False
        while self._queue and not self._streaming:
            self._reply(self._queue.pop(0))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._take_request()) is not None:
            reply = self._replies.pick(*request)
            if self._streaming:
                self._queue.append(reply)
            else:
                self._reply(reply)

    def _reply(self, reply: bytes | list[bytes]) -> None:
        if isinstance(reply, bytes):
            self.write(reply)
        else:
            self._streaming = True
            self._ticker.add(self, reply)

    def _take_request(self) -> tuple[bytes, bytes, bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end].split(b"\r\n")
        method, path = head[0].split(b" ")[:2]
        length = 0
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        start = end + 4
        if chunked:
            return self._take_chunked(method, path, start)
        if len(self._buffer) < start + length:
            return None
        body = self._buffer[start : start + length]
        self._buffer = self._buffer[start + length :]
        return method, path, body

    def _take_chunked(
        self, method: bytes, path: bytes, start: int
    ) -> tuple[bytes, bytes, bytes] | None:
        parts: list[bytes] = []
        position = start
        while True:
            line_end = self._buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(self._buffer[position:line_end].split(b";")[0], 16)
            if size == 0:
                tail = self._buffer.find(b"\r\n\r\n", line_end)
                if tail < 0:
                    return None
                self._buffer = self._buffer[tail + 4 :]
                return method, path, b"".join(parts)
            data_start = line_end + 2
            if len(self._buffer) < data_start + size + 2:
                return None
            parts.append(self._buffer[data_start : data_start + size])
            position = data_start + size + 2


async def serve(host: str, port: int, event_gap: float = 0.0) -> asyncio.Server:
    """Listen on host:port; the caller owns the returned server."""
    replies = Replies()
    ticker = Ticker(event_gap)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: UpstreamProtocol(replies, ticker), host, port, backlog=1024
    )


async def _main(host: str, port: int, event_gap: float) -> None:
    server = await serve(host, port, event_gap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--event-gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.host, args.port, args.event_gap_ms / 1000))


if __name__ == "__main__":
    main()
