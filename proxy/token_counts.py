"""POST /v1/responses/input_tokens: what a create request's input costs, without generating.

The request is translated as `POST /v1/responses` would translate it, then counted by the
backend where it can count exactly what it will report as `prompt_tokens`:

- llama.cpp: `POST /apply-template` with the chat request renders its prompt, and `POST
  /tokenize` tokenizes it the way a completion does (special tokens added and parsed);
- vLLM: `POST /tokenize` with the request's `model`, `messages` and `tools`.

Both are asked at the upstream's base URL without `/v1`, in that order, and the one that answers
is remembered. A backend with neither gets an estimate: one token per 4 characters of the chat
request's `messages` and `tools` as JSON, rounded up. A log line says which way was taken.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import orjson
from aiohttp import web
from yarl import URL

from diglot.proxy.conversation import begin_turn, resolve_turn
from diglot.proxy.conversations import join_conversation, relay
from diglot.proxy.inbound import read_body
from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import check_item_count
from diglot.proxy.observability import CURRENT_RECORD, get_logger
from diglot.proxy.replies import json_response
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.upstream import REQUEST_ID, UpstreamRefused, read_all
from diglot.translators.decoding import json_object
from diglot.translators.errors import RequestError
from diglot.translators.requests import request_to_chat
from diglot.translators.responses_models import decode_responses_request as decode

Way = Literal["llama.cpp", "vllm", "estimate"]
Exact = Literal["llama.cpp", "vllm"]
log = get_logger()
_ABSENT = frozenset({404, 405})  # the backend has no such endpoint, as opposed to failing
_CHARS_PER_TOKEN = 4
_VLLM_FIELDS = ("model", "messages", "tools", "chat_template_kwargs")


class InputTokens:
    """The route's handler; remembers how the upstream counts, once it has told."""

    def __init__(self) -> None:
        self._exact: Exact | None = None  # the way that answered last
        self._none = False  # both ways are absent: estimate without asking again

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        proxy, record = request.app[PROXY], request[RECORD]
        if proxy.config.upstream_api == "responses":
            return await relay(request, proxy)
        body = await _chat_body(request, proxy)
        record.model = body["model"]
        count, way = await self._count(proxy, request, body)
        record.input_tokens = count
        log.info("input_tokens_counted", request_id=record.request_id, way=way, tokens=count)
        answer = {"object": "response.input_tokens", "input_tokens": count}
        return json_response(answer, 200, {REQUEST_ID: record.request_id})

    async def _count(
        self, proxy: Proxy, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, Way]:
        """Exactly where the backend can tell, else the estimate."""
        if self._none:
            return estimate(body), "estimate"
        base = _base_url(proxy.config.upstream)
        request_id = request[RECORD].request_id
        headers = proxy.upstream.headers(request.headers, request_id, "application/json")
        ways: tuple[Exact, ...] = (self._exact,) if self._exact else ("llama.cpp", "vllm")
        absent = 0
        for way in ways:
            count, status = await _COUNTERS[way](proxy, base, headers, body)
            if count is not None:
                self._exact = way
                return count, way
            absent += status in _ABSENT
        self._exact = None  # asked again next time, in order
        self._none = absent == 2
        return estimate(body), "estimate"


def estimate(body: dict[str, Any]) -> int:
    """One token per 4 characters of the messages and tools as JSON, rounded up."""
    text = dumps({"messages": body["messages"], "tools": body.get("tools", [])}).decode()
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


async def _chat_body(request: web.Request, proxy: Proxy) -> dict[str, Any]:
    """The chat request `POST /v1/responses` would send for the same body."""
    raw = await read_body(request, proxy.config.max_body_bytes)
    data = json_object(raw)
    if "input" not in data:  # optional here: the conversation or the previous response may do
        data["input"] = []
        raw = dumps(data)
    parsed = decode(raw, proxy.tool_shelf)
    if not isinstance(parsed.input, str):
        check_item_count(len(parsed.input), proxy.config.max_input_items, "input")
    turn = begin_turn(proxy.store, proxy.sealer, request.headers, parsed, raw, new_id=proxy.new_id)
    joined = await join_conversation(proxy.store, turn.tenant, parsed, proxy.new_id)
    if turn.unresolved:
        await resolve_turn(turn, parsed, raw, new_id=proxy.new_id)
    history = turn.history if joined is None else joined.history
    call = request_to_chat(
        parsed,
        proxy.options,
        now=int(time.time()),
        new_id=proxy.new_id,
        history=history,
        sealing=proxy.sealer.sealing(turn.tenant),
    )
    return call.body


async def _llama_cpp(
    proxy: Proxy, base: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[int | None, int]:
    """The prompt llama.cpp renders for the request, tokenized as its completions are."""
    rendered, status = await _ask(proxy, URL(base + "/apply-template"), headers, body)
    prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
    if not isinstance(prompt, str):
        return None, status
    asked = {"content": prompt, "add_special": True, "parse_special": True}
    tokenized, status = await _ask(proxy, URL(base + "/tokenize"), headers, asked)
    tokens = tokenized.get("tokens") if isinstance(tokenized, dict) else None
    return (len(tokens), status) if isinstance(tokens, list) else (None, status)


async def _vllm(
    proxy: Proxy, base: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[int | None, int]:
    """vLLM's count of the chat request's prompt."""
    asked = {name: body[name] for name in _VLLM_FIELDS if name in body}
    counted, status = await _ask(proxy, URL(base + "/tokenize"), headers, asked)
    count = counted.get("count") if isinstance(counted, dict) else None
    return (count, status) if type(count) is int else (None, status)


_COUNTERS = {"llama.cpp": _llama_cpp, "vllm": _vllm}


async def _ask(
    proxy: Proxy, url: URL, headers: dict[str, str], payload: dict[str, Any]
) -> tuple[object, int]:
    """One tokenizer endpoint's JSON answer (None if it gave none) and status (0: no answer).

    Not the request's upstream exchange: a backend without the endpoint is no upstream fault.
    """
    token = CURRENT_RECORD.set(None)
    try:
        async with proxy.upstream.open(
            "POST", url, headers, dumps(payload), passthrough=False
        ) as answer:
            return orjson.loads(await read_all(answer)), answer.status
    except UpstreamRefused as refused:
        return None, refused.reply.status
    except (RequestError, orjson.JSONDecodeError):
        return None, 0
    finally:
        CURRENT_RECORD.reset(token)


def _base_url(upstream: str) -> str:
    """The upstream's base URL without its `/v1`, where both tokenizers live."""
    base = upstream.rstrip("/")
    return base.removesuffix("/v1")
