"""The Conversations API: conversation objects and their items, kept in diglot's store in front
of a chat upstream, relayed untouched to a Responses upstream, which keeps its own."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from yarl import URL

from diglot.proxy.conversation import store_unavailable, tenant_of
from diglot.proxy.inbound import read_body
from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import check_item_count
from diglot.proxy.observability import get_logger
from diglot.proxy.replies import json_response
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.store import (
    Conversation,
    ItemIdTaken,
    Order,
    Store,
    StoredItem,
    StoreUnavailable,
)
from diglot.proxy.upstream import REQUEST_ID, relay_whole
from diglot.translators.content import message_text_parts
from diglot.translators.decoding import json_object
from diglot.translators.errors import RequestError, invalid_type, missing_parameter
from diglot.translators.ids import CONVERSATION_PREFIX, IdFactory, item_prefix
from diglot.translators.responses_models import ItemReference, ResponsesRequest, decode_items

T = TypeVar("T")
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request, Proxy], Awaitable[web.StreamResponse]]
log = get_logger()

_MAX_ITEMS = 20  # items one create or add takes, as OpenAI's
_MAX_LIMIT = 100
_MAX_METADATA = (16, 64, 512)  # pairs, characters of a key, characters of a value
_NO_STATUS = frozenset({"custom_tool_call_output"})  # OpenAI's item of this type has none
_PART_DEFAULTS: dict[str, dict[str, Any]] = {
    "input_image": {"detail": "auto"},
    "output_text": {"annotations": []},
}


def _kept_here(handler: Handler) -> Route:
    """The route as diglot answers it for a chat upstream; a Responses upstream's own else."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        proxy = request.app[PROXY]
        if proxy.config.upstream_api == "responses":
            return await relay(request, proxy)
        return await handler(request, proxy)

    return route


@_kept_here
async def create_conversation(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """POST /v1/conversations."""
    body = await _body(request, proxy, {"items", "metadata"})
    metadata = _metadata(body.get("metadata"))
    given = body.get("items")
    items = [] if given is None else _new_items(given, proxy.new_id)
    tenant = _tenant(request)
    conversation = Conversation(
        proxy.new_id(CONVERSATION_PREFIX), tenant, float(int(time.time())), metadata
    )
    try:
        await proxy.store.put_conversation(conversation, items)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the conversation cannot be created") from None
    except ItemIdTaken as taken:
        raise _duplicate(items, taken.item_id) from None
    return _json(request, _conversation_object(conversation))


@_kept_here
async def get_conversation(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """GET /v1/conversations/{conversation_id}."""
    conversation_id = request.match_info["conversation_id"]
    conversation = await _read(proxy.store.get_conversation(_tenant(request), conversation_id))
    if conversation is None:
        raise conversation_not_found(conversation_id)
    return _json(request, _conversation_object(conversation))


@_kept_here
async def update_conversation(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """POST /v1/conversations/{conversation_id}: new metadata, replacing the old."""
    body = await _body(request, proxy, {"metadata"})
    if "metadata" not in body:
        raise missing_parameter("metadata")
    metadata = _metadata(body["metadata"])
    conversation_id = request.match_info["conversation_id"]
    try:
        updated = await proxy.store.set_conversation_metadata(
            _tenant(request), conversation_id, metadata
        )
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the conversation cannot be updated") from None
    if updated is None:
        raise conversation_not_found(conversation_id)
    return _json(request, _conversation_object(updated))


@_kept_here
async def delete_conversation(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """DELETE /v1/conversations/{conversation_id}, with its items."""
    conversation_id = request.match_info["conversation_id"]
    try:
        deleted = await proxy.store.delete_conversation(_tenant(request), conversation_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the conversation cannot be deleted") from None
    if not deleted:
        raise conversation_not_found(conversation_id)
    answer = {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
    return _json(request, answer)


@_kept_here
async def list_items(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """GET /v1/conversations/{conversation_id}/items: a page of them, newest first by default."""
    limit, after, order = page_query(request)
    conversation_id, tenant = request.match_info["conversation_id"], _tenant(request)
    found = await _read(
        proxy.store.conversation_items(
            tenant, conversation_id, order=order, after=after, limit=limit
        )
    )
    if found is None:
        await _require(proxy.store, tenant, conversation_id)
        raise RequestError(
            f"Invalid value for 'after': the conversation has no item with id '{after}'.",
            "after",
        )
    return _item_list(request, found.items, found.has_more)


@_kept_here
async def add_items(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """POST /v1/conversations/{conversation_id}/items: appended in the order given."""
    body = await _body(request, proxy, {"items"})
    if "items" not in body:
        raise missing_parameter("items")
    items = _new_items(body["items"], proxy.new_id)
    if not items:
        raise RequestError(
            "Invalid 'items': empty array. Expected an array with minimum length 1.",
            "items",
            "empty_array",
        )
    conversation_id = request.match_info["conversation_id"]
    try:
        added = await proxy.store.add_conversation_items(_tenant(request), conversation_id, items)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "items cannot be added") from None
    except ItemIdTaken as taken:
        raise _duplicate(items, taken.item_id) from None
    if not added:
        raise conversation_not_found(conversation_id)
    return _item_list(request, items, False)


@_kept_here
async def get_item(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """GET /v1/conversations/{conversation_id}/items/{item_id}."""
    conversation_id, item_id = request.match_info["conversation_id"], request.match_info["item_id"]
    tenant = _tenant(request)
    item = await _read(proxy.store.get_conversation_item(tenant, conversation_id, item_id))
    if item is None:
        await _require(proxy.store, tenant, conversation_id)
        raise item_not_found(item_id)
    return json_response(item.body, 200, {REQUEST_ID: request[RECORD].request_id})


@_kept_here
async def delete_item(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """DELETE /v1/conversations/{conversation_id}/items/{item_id}: answers the conversation."""
    conversation_id, item_id = request.match_info["conversation_id"], request.match_info["item_id"]
    tenant = _tenant(request)
    try:
        conversation = await proxy.store.delete_conversation_item(tenant, conversation_id, item_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the item cannot be deleted") from None
    if conversation is None:
        await _require(proxy.store, tenant, conversation_id)
        raise item_not_found(item_id)
    return _json(request, _conversation_object(conversation))


class Joined:
    """A create request's turn taken in a conversation: the conversation's items before it, and
    its own input and output appended to them once it ended."""

    __slots__ = ("history", "id", "input", "new_id", "store", "taken", "tenant")

    def __init__(
        self,
        store: Store,
        tenant: str,
        conversation_id: str,
        items: list[dict[str, Any]],
        new_id: IdFactory,
    ) -> None:
        self.store, self.tenant, self.id, self.new_id = store, tenant, conversation_id, new_id
        self.history = decode_items(items)
        self.taken = {item["id"] for item in items}  # ids an appended item may not have
        self.input: list[dict[str, Any]] = []

    def take_input(self, raw: bytes, references: dict[int, dict[str, Any]]) -> None:
        """The turn's input as the conversation will keep it, references resolved."""
        given = msgspec.json.decode(raw)["input"]
        if isinstance(given, str):
            given = [{"role": "user", "content": given}]
        self.input = [references.get(index, item) for index, item in enumerate(given)]

    async def append(self, response: Mapping[str, Any]) -> None:
        """After a turn that completed (or stopped short): its input and output, in order."""
        if response["status"] not in ("completed", "incomplete"):
            return
        items: list[StoredItem] = []
        for given in (*self.input, *response["output"]):
            item = _conversation_item(given, self.new_id)
            if item["id"] in self.taken:
                item["id"] = self.new_id(item_prefix(item["type"]))
            self.taken.add(item["id"])
            items.append(StoredItem(item["id"], dumps(item)))
        try:
            added = await self.store.add_conversation_items(self.tenant, self.id, items)
        except (StoreUnavailable, ItemIdTaken) as exc:
            log.warning("conversation_not_appended", conversation_id=self.id, error=repr(exc))
            return
        if not added:
            log.warning("conversation_not_appended", conversation_id=self.id, error="gone")


async def join_conversation(
    store: Store, tenant: str, req: ResponsesRequest, new_id: IdFactory
) -> Joined | None:
    """The conversation a create request names, read; None when it names none."""
    params = req.params
    if params.conversation is None:
        return None
    if params.previous_response_id is not None:
        raise RequestError(
            "'conversation' and 'previous_response_id' cannot be used together.",
            "conversation",
            "mutually_exclusive_parameters",
        )
    conversation_id = _conversation_id(params.conversation)
    items = await _items_of(store, tenant, conversation_id)
    params.conversation = None  # resolved here: the translation has nothing left to refuse
    return Joined(store, tenant, conversation_id, items, new_id)


def _conversation_id(value: object) -> str:
    """A create request's `conversation`: its id, or an object holding it."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise invalid_type("conversation", "a conversation id or an object with one")
    return value


async def _items_of(store: Store, tenant: str, conversation_id: str) -> list[dict[str, Any]]:
    """Every item of the conversation, oldest first: what a turn in it sends before its input."""
    try:
        found = await store.conversation_items(tenant, conversation_id)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "'conversation' cannot be resolved") from None
    if found is None:
        raise RequestError(
            f"Conversation with id '{conversation_id}' not found.",
            "conversation",
            "conversation_not_found",
            404,
        )
    return [msgspec.json.decode(item.body) for item in found.items]


def _conversation_item(given: dict[str, Any], new_id: IdFactory) -> dict[str, Any]:
    """An input item as a conversation keeps and shows it: with an id, a type, a status, and
    message content as parts."""
    kind = given.get("type", "message")
    item_id = given.get("id")
    if not isinstance(item_id, str) or not item_id:
        item_id = new_id(item_prefix(kind))
    item = {"id": item_id, "type": kind, **given}
    item["id"], item["type"] = item_id, kind
    if kind not in _NO_STATUS:
        item.setdefault("status", "completed")
    if kind == "message":
        item["content"] = _parts(item.get("role"), item.get("content"))
    return item


def conversation_not_found(conversation_id: str) -> RequestError:
    return RequestError(f"Conversation with id '{conversation_id}' not found.", None, None, 404)


def item_not_found(item_id: str) -> RequestError:
    return RequestError(f"Item with id '{item_id}' not found.", None, None, 404)


async def relay(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """The same request to the Responses upstream, body and query untouched; its answer as is."""
    record = request[RECORD]
    record.direction = "passthrough"
    raw = await read_body(request, proxy.config.max_body_bytes) if request.can_read_body else None
    tail = request.rel_url.raw_path.removeprefix("/v1")
    query = request.rel_url.raw_query_string
    url = URL(proxy.config.upstream + tail + (f"?{query}" if query else ""), encoded=True)
    content_type = None if raw is None else request.headers.get("Content-Type", "application/json")
    headers = proxy.upstream.headers(request.headers, record.request_id, content_type)
    return await relay_whole(proxy.upstream, request.method, url, headers, raw, record.request_id)


async def _body(request: web.Request, proxy: Proxy, known: set[str]) -> dict[str, Any]:
    """The JSON object a route takes, with no parameter it does not know."""
    body = json_object(await read_body(request, proxy.config.max_body_bytes))
    for name in body:
        if name not in known:
            raise RequestError(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    return body


def _metadata(value: object) -> bytes:
    """Up to 16 string pairs, keys of up to 64 characters and values of up to 512, as JSON."""
    if value is None:
        return b"{}"
    pairs, key_length, value_length = _MAX_METADATA
    if not isinstance(value, dict) or not all(isinstance(text, str) for text in value.values()):
        raise invalid_type("metadata", "an object with string values")
    if len(value) > pairs:
        raise RequestError(
            f"Invalid 'metadata': too many keys. Expected at most {pairs}, got {len(value)}.",
            "metadata",
        )
    for key, text in value.items():
        if len(key) > key_length or len(text) > value_length:
            raise RequestError(
                f"Invalid 'metadata': keys are at most {key_length} characters long and values "
                f"at most {value_length}; '{key[:key_length]}' is longer.",
                "metadata",
            )
    return dumps(value)


def _new_items(given: object, new_id: IdFactory) -> list[StoredItem]:
    """The `items` of a request, checked as input items and shaped as the conversation keeps
    them."""
    if not isinstance(given, list):
        raise invalid_type("items", "an array of input items")
    check_item_count(len(given), _MAX_ITEMS, "items")
    for index, item in enumerate(given):  # decode_items takes the type for a hashable one
        if isinstance(item, dict) and not isinstance(item.get("type", ""), str):
            raise invalid_type(f"items[{index}].type", "a string")
    try:
        decoded = decode_items(given)
    except RequestError as exc:
        raise _as_items(exc) from None
    for index, item in enumerate(decoded):
        if type(item) is ItemReference:
            raise RequestError(
                "Items of type 'item_reference' cannot be added to a conversation; add the item "
                "itself.",
                f"items[{index}].type",
            )
    shaped = [_conversation_item(item, new_id) for item in given]
    return [StoredItem(item["id"], dumps(item)) for item in shaped]


def _as_items(exc: RequestError) -> RequestError:
    """An input item's error, naming it where this request has it: in `items`."""
    param = exc.param
    if param is not None and param.startswith("input["):
        param = "items" + param.removeprefix("input")
    message = exc.message.replace("'input[", "'items[")
    return RequestError(message, param, exc.code, exc.status, exc.error_type)


def _parts(role: object, content: object) -> object:
    """A message's content as parts, with the fields OpenAI's own parts always have."""
    if isinstance(content, str):
        return message_text_parts(role, content)
    if not isinstance(content, list):
        return content
    return [
        {**_PART_DEFAULTS.get(str(part.get("type")), {}), **part}
        if isinstance(part, dict)
        else part
        for part in content
    ]


def _duplicate(items: list[StoredItem], item_id: str) -> RequestError:
    """The 400 for an item whose id the conversation holds, naming its last place in `items`."""
    index = max(i for i, item in enumerate(items) if item.id == item_id)
    return RequestError(
        f"Duplicate item id '{item_id}': a conversation holds each item once.",
        f"items[{index}].id",
    )


def page_query(request: web.Request) -> tuple[int, str | None, Order]:
    """`limit`, `after` and `order` (newest first unless asked); `include` is taken as it is."""
    query = request.query
    limit_text = query.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_LIMIT:
        raise RequestError(
            f"Invalid value for 'limit': expected an integer from 1 to {_MAX_LIMIT}.", "limit"
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise RequestError("Invalid value for 'order': expected 'asc' or 'desc'.", "order")
    return int(limit_text), query.get("after") or None, "asc" if order == "asc" else "desc"


def _tenant(request: web.Request) -> str:
    return tenant_of(request.headers)


async def _read(lookup: Awaitable[T]) -> T:
    """A store read; the store being down is a 503."""
    try:
        return await lookup
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "conversations cannot be read") from None


async def _require(store: Store, tenant: str, conversation_id: str) -> None:
    """A 404 naming the conversation when it is missing (to tell it from a missing item)."""
    if await _read(store.get_conversation(tenant, conversation_id)) is None:
        raise conversation_not_found(conversation_id)


def _conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(conversation.created_at),
        "metadata": msgspec.Raw(conversation.metadata),
    }


def _item_list(request: web.Request, items: list[StoredItem], has_more: bool) -> web.Response:
    """A list of items, their JSON spliced in as stored."""
    body = {
        "object": "list",
        "data": [msgspec.Raw(item.body) for item in items],
        "first_id": items[0].id if items else None,
        "last_id": items[-1].id if items else None,
        "has_more": has_more,
    }
    return json_response(msgspec.json.encode(body), 200, {REQUEST_ID: request[RECORD].request_id})


def _json(request: web.Request, body: dict[str, Any]) -> web.Response:
    return json_response(msgspec.json.encode(body), 200, {REQUEST_ID: request[RECORD].request_id})
