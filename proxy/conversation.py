"""Conversation state for Responses clients of a chat upstream: chains, references, storage.

A chat backend keeps nothing between requests, so diglot keeps each stored response's own
turn (its input items, its response object) and rebuilds the conversation from the chain of
`previous_response_id` links when a client continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.jsonenc import dumps
from diglot.proxy.observability import get_logger
from diglot.proxy.seal import Sealer
from diglot.proxy.store import Record, Store, StoreUnavailable, default_state_dir, open_store
from diglot.translators.content import message_text_parts
from diglot.translators.errors import RequestError
from diglot.translators.ids import IdFactory, item_prefix
from diglot.translators.requests.include import sealed_reasoning_asked
from diglot.translators.responses_models import (
    InputItem,
    ItemReference,
    ResponsesRequest,
    decode_items,
)
from diglot.translators.responses_shapes import Response

log = get_logger()
_UNSTATUSED = frozenset({"compaction", "compaction_trigger"})  # kept as they came: no status
_EXPIRY_INTERVAL = 60.0


def tenant_of(headers: Mapping[str, str]) -> str:
    """Whose stored responses a request may see: a hash of its bearer key, never the key."""
    return _tenant(headers.get("Authorization", ""))


@functools.lru_cache(maxsize=1024)
def _tenant(authorization: str) -> str:
    """Hashed once per key: a client sends the same header on every request."""
    scheme, _, key = authorization.partition(" ")
    secret = key.strip() if scheme.lower() == "bearer" else ""
    return hashlib.sha256(b"diglot tenant\0" + secret.encode()).hexdigest()[:32]


def store_unavailable(exc: StoreUnavailable, need: str) -> RequestError:
    """The 503 of a request that needs stored state while the store is down."""
    log.warning("store_unavailable", error=str(exc))
    return RequestError(
        f"The response store is unavailable, so {need}; try again shortly.",
        code="store_unavailable",
        status=503,
        error_type="server_error",
    )


def not_found(response_id: str) -> RequestError:
    return RequestError(f"Response with id '{response_id}' not found.", None, None, 404)


class Turn(msgspec.Struct):
    """One Responses request's dealings with the store: what it continues and what it keeps."""

    store: Store
    tenant: str
    previous_id: str | None = None
    history: list[InputItem] | None = None
    input_items: list[dict[str, Any]] | None = None  # as stored, when the response is kept
    references: dict[int, dict[str, Any]] = {}  # input index -> item
    known_ids: set[str] = set()  # item ids of the chain continued
    previous_usage: dict[str, Any] | None = None  # what the response continued reported
    _bodies: dict[str, dict[str, Any]] = {}
    unresolved: bool = False  # stored state still to be read by resolve_turn
    kept: bool = True  # the response is kept once finished
    shared: bool = True  # and shared beyond its WebSocket connection

    @property
    def keeps(self) -> bool:
        """The response is to be stored (`keep` does nothing otherwise)."""
        return self.input_items is not None

    def body(self, record: Record) -> dict[str, Any]:
        """A record's body, decoded once per request."""
        body = self._bodies.get(record.id)
        if body is None:
            body = self._bodies[record.id] = msgspec.json.decode(record.body)
        return body

    async def keep(self, response: Response | dict[str, Any], encoded: bytes | None = None) -> bool:
        """Store the finished response before the client sees it end; unstored, it says so.

        `encoded` is the response as JSON when the caller has it already (it goes to the client
        too); False when the store failed and the response was changed to say so.
        """
        if self.input_items is None:
            return True
        item_ids = [item["id"] for item in self.input_items]
        item_ids += [item["id"] for item in response["output"] if isinstance(item.get("id"), str)]
        if encoded is None:
            encoded = dumps(response)
        record = Record(
            id=response["id"],
            tenant=self.tenant,
            previous_id=self.previous_id,
            created_at=float(response["created_at"]),
            body=b'{"input":' + dumps(self.input_items) + b',"response":' + encoded + b"}",
            item_ids=tuple(item_ids),
            shared=self.shared,
        )
        try:
            await self.store.put(record)
        except StoreUnavailable as exc:
            log.warning("response_not_stored", response_id=response["id"], error=str(exc))
            response["store"] = False
            return False
        return True


def begin_turn(
    store: Store,
    sealer: Sealer,
    headers: Mapping[str, str],
    req: ResponsesRequest,
    raw: bytes,
    kept_unstored: bool = False,
    answered: bool = True,
    *,
    new_id: IdFactory,
) -> Turn:
    """A request's turn, begun without waiting on the store when it continues nothing stored.

    One that does (`previous_response_id`, `item_reference`s) is `unresolved` until
    `resolve_turn` has read the store. With `kept_unstored` (a WebSocket connection's store),
    a `store: false` response is kept too, as a record the store does not share. Without
    `answered` (a compaction), no response is kept. Input items kept without an id get one
    from `new_id`.
    """
    params = req.params
    turn = Turn(store, tenant_of(headers), previous_id=params.previous_response_id)
    turn.shared = params.store is not False
    turn.kept = answered and (turn.shared or kept_unstored)
    if sealed_reasoning_asked(params):
        sealer.ready()
    references = not isinstance(req.input, str) and ItemReference in map(type, req.input)
    if params.previous_response_id is not None or references:
        turn.unresolved = True
    elif turn.kept:
        _note_input(turn, raw, new_id)
    return turn


async def resolve_turn(turn: Turn, req: ResponsesRequest, raw: bytes, *, new_id: IdFactory) -> None:
    """Read the conversation a turn continues and the items it references; note what it keeps."""
    params = req.params
    if params.previous_response_id is not None:
        turn.history = await _history(turn, params.previous_response_id)
    if not isinstance(req.input, str) and ItemReference in map(type, req.input):
        req.input = await _resolve_references(turn, req.input)
    if turn.kept:
        _note_input(turn, raw, new_id)
    turn.unresolved = False


class _GivenInput(msgspec.Struct):
    """A request's `input` as the client wrote it; the other fields are skipped, not built."""

    input: str | list[Any]


_given_input = msgspec.json.Decoder(_GivenInput)


def _note_input(turn: Turn, raw: bytes, new_id: IdFactory) -> None:
    """The input the turn will store, its references (if any) already resolved."""
    raw_input = _given_input.decode(raw).input
    turn.input_items = _stored_input(raw_input, turn.references, set(turn.known_ids), new_id)


async def _history(turn: Turn, response_id: str) -> list[InputItem]:
    """Every stored item of the chain, oldest turn first: its input, then its output."""
    try:
        chain = await turn.store.chain(turn.tenant, response_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "'previous_response_id' cannot be resolved") from None
    if not chain:
        raise _previous_not_found(response_id)
    if chain[0].previous_id is not None:
        raise _previous_not_found(chain[0].previous_id)
    bodies = [turn.body(record) for record in chain]
    turn.previous_usage = bodies[-1]["response"].get("usage")
    items = chain_items(bodies)
    turn.known_ids.update(item["id"] for item in items if isinstance(item.get("id"), str))
    return decode_items(items)


def chain_items(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored turns' items in conversation order: each turn's input, then its output."""
    items: list[dict[str, Any]] = []
    for body in bodies:
        items += body["input"]
        items += body["response"]["output"]
    return items


def _previous_not_found(response_id: str) -> RequestError:
    return RequestError(
        f"Previous response with id '{response_id}' not found.",
        "previous_response_id",
        "previous_response_not_found",
    )


async def _resolve_references(turn: Turn, items: Sequence[InputItem]) -> list[InputItem]:
    """Each `item_reference` replaced by the stored item it names (of this tenant only)."""
    wanted = [item.id for item in items if type(item) is ItemReference]
    try:
        found = await turn.store.locate(turn.tenant, wanted)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "'item_reference' input items cannot be resolved") from None
    resolved: list[InputItem] = []
    for index, item in enumerate(items):
        if type(item) is not ItemReference:
            resolved.append(item)
            continue
        record = found.get(item.id)
        stored = None if record is None else _find_item(turn.body(record), item.id)
        if stored is None:
            raise RequestError(
                f"Item with id '{item.id}' not found.", f"input[{index}].id", "item_not_found"
            )
        turn.references[index] = stored
        resolved += decode_items([stored])
    return resolved


def _find_item(body: dict[str, Any], item_id: str) -> dict[str, Any] | None:
    for item in (*body["response"]["output"], *body["input"]):
        if item.get("id") == item_id:
            found: dict[str, Any] = item
            return found
    return None


def _stored_input(
    raw_input: str | list[Any],
    references: dict[int, dict[str, Any]],
    seen: set[str],
    new_id: IdFactory,
) -> list[dict[str, Any]]:
    """The turn's input as kept: a string as a user message, references resolved, every item
    with a status and an id no other item of the conversation (`seen` so far) has."""
    if isinstance(raw_input, str):
        raw_input = [{"role": "user", "content": raw_input}]
    items: list[dict[str, Any]] = []
    for index, given in enumerate(raw_input):
        fields = references.get(index, given)
        kind = fields.get("type", "message")
        item_id = fields.get("id")
        if not isinstance(item_id, str) or item_id in seen:
            item_id = new_id(item_prefix(kind))
        seen.add(item_id)
        item = {"id": item_id, "type": kind, **fields}
        item["id"], item["type"] = item_id, kind
        if kind not in _UNSTATUSED:
            item.setdefault("status", "completed")
        if kind == "message" and isinstance(item.get("content"), str):
            item["content"] = message_text_parts(item.get("role"), item["content"])
        items.append(item)
    return items


def open_state(config: Config) -> tuple[Store, Sealer]:
    """The store and the sealer a configuration names (neither touches disk until used)."""
    state_dir = Path(config.state_dir) if config.state_dir else default_state_dir()
    url = config.store or f"sqlite://{state_dir.resolve() / 'responses.db'}"
    store = open_store(url, config.store_ttl, config.store_max_bytes)
    return store, Sealer(config.seal_key, state_dir)


def install_store(app: web.Application, store: Store, expire: bool) -> None:
    """Expire entries in the background while the app runs; close the store when it stops."""

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(store.expire_forever(_EXPIRY_INTERVAL)) if expire else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()

    app.cleanup_ctx.append(lifecycle)
