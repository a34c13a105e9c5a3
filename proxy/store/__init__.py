"""Stored responses: one protocol, a backend per module, chosen by the `--store` URL."""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from diglot.proxy.observability import get_logger

Clock = Callable[[], float]
Order = Literal["asc", "desc"]
DAY = 24 * 60 * 60
MAX_CHAIN = 100_000  # a guard against a link cycle, far beyond any real conversation
log = get_logger()


class StoreUnavailable(Exception):
    """The backend cannot be reached or written; requests that need state get a 503."""


@dataclass(frozen=True, slots=True)
class Record:
    """One stored response: its own turn only, linked to the one it continues.

    `body` is opaque to the store (the proxy keeps the turn's input items, its response object
    and so its output and instructions there); `item_ids` are the ids `locate` finds it by.
    """

    id: str
    tenant: str
    previous_id: str | None
    created_at: float
    body: bytes
    item_ids: tuple[str, ...] = field(default=(), compare=False)  # written, never read back
    shared: bool = field(default=True, compare=False)  # False: for its WebSocket connection only

    @property
    def size(self) -> int:
        """What the record counts against the byte budget."""
        return len(self.body) + len(self.id) + len(self.tenant) + 64 + sum(map(len, self.item_ids))


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation object; its items are kept apart, in the order they were added."""

    id: str
    tenant: str
    created_at: float
    metadata: bytes  # JSON, opaque to the store


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One item of a conversation: its id, and its JSON, opaque to the store."""

    id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ItemSlice:
    """Some of a conversation's items, in the order asked for."""

    items: list[StoredItem]
    has_more: bool


class ItemIdTaken(Exception):
    """An item added to a conversation has the id of one it holds, or of another added with it."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


@dataclass(frozen=True, slots=True)
class KeptEvents:
    """Some of a background response's kept events: those after the sequence number asked for.

    Every event numbered from `first` up to `next` (excluded) is kept; those before `first` went
    past the per-response cap (or could not be written), so a replay needing them cannot be had.
    """

    frames: list[bytes]  # each event as the client's stream frames it, in order
    first: int
    next: int


@dataclass(frozen=True, slots=True)
class Renewal:
    """What renewing its leases tells a diglot about the background responses it runs."""

    cancel: frozenset[str] = frozenset()  # a cancel was asked for (from any replica)
    lost: frozenset[str] = frozenset()  # no longer its own: lapsed, or the response deleted


@dataclass(frozen=True, slots=True)
class LapsedRun:
    """A background response whose diglot stopped renewing its lease: it will never finish."""

    response_id: str
    tenant: str
    progress: bytes | None  # the response as its diglot last wrote it, if it did


class Store(ABC):
    """What every backend offers; records of another tenant are as absent as deleted ones.

    Conversations live beside the responses, kept for the TTL after their last change; they are
    not counted against the byte budget. Background responses add a lease per running response
    (which diglot runs it, until when, whether a cancel was asked, its progress) and the events
    it streamed, kept up to a byte cap per response and for as long as the response; neither is
    counted against the budget, and deleting the response deletes both.
    """

    def __init__(self, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.clock = clock

    @abstractmethod
    async def put(self, record: Record) -> None:
        """Keep the record; returns only once it is durable as the backend allows."""

    @abstractmethod
    async def get(self, tenant: str, response_id: str) -> Record | None:
        """One stored response, without its ancestors."""

    @abstractmethod
    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        """The response and its ancestors, oldest first, in one round trip where possible.

        None when the response itself is missing; when an ancestor is, the list stops short
        and its first record still names a `previous_id`.
        """

    @abstractmethod
    async def delete(self, tenant: str, response_id: str) -> bool:
        """Forget the response, its run and its kept events; False when there was nothing of
        this tenant's to forget."""

    @abstractmethod
    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        """The records holding each of these item ids (ids not found are left out)."""

    @abstractmethod
    async def put_conversation(self, conversation: Conversation, items: list[StoredItem]) -> None:
        """Keep a new conversation with its first items; raises ItemIdTaken for a repeated id."""

    @abstractmethod
    async def get_conversation(self, tenant: str, conversation_id: str) -> Conversation | None:
        """The conversation object, without its items."""

    @abstractmethod
    async def set_conversation_metadata(
        self, tenant: str, conversation_id: str, metadata: bytes
    ) -> Conversation | None:
        """Replace the conversation's metadata; the conversation as it now is."""

    @abstractmethod
    async def delete_conversation(self, tenant: str, conversation_id: str) -> bool:
        """Forget the conversation and its items; False when there was none of this tenant's."""

    @abstractmethod
    async def add_conversation_items(
        self, tenant: str, conversation_id: str, items: list[StoredItem]
    ) -> bool:
        """Append items, all or none; False when the conversation is missing.

        Raises ItemIdTaken when an item's id is one the conversation holds or is repeated.
        """

    @abstractmethod
    async def conversation_items(
        self,
        tenant: str,
        conversation_id: str,
        *,
        order: Order = "asc",
        after: str | None = None,
        limit: int | None = None,
    ) -> ItemSlice | None:
        """Up to `limit` items (all without one) after the item `after`, in `order`.

        None when the conversation is missing or does not hold `after`.
        """

    @abstractmethod
    async def get_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> StoredItem | None:
        """One item of the conversation."""

    @abstractmethod
    async def delete_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        """Remove one item; the conversation, or None when it or the item is missing."""

    @abstractmethod
    async def claim_run(self, response_id: str, tenant: str, owner: str, lease: float) -> None:
        """`owner` runs the background response, for `lease` seconds from now unless renewed."""

    @abstractmethod
    async def renew_runs(
        self, owner: str, progress: Mapping[str, bytes | None], lease: float
    ) -> Renewal:
        """Extend `owner`'s leases on these runs by `lease` seconds from now, keeping each one's
        progress (the response as it stands, as JSON; None: unchanged)."""

    @abstractmethod
    async def end_run(self, response_id: str) -> None:
        """The run is over (its response was stored as it ended): its lease and progress go."""

    @abstractmethod
    async def cancel_run(self, tenant: str, response_id: str) -> bool:
        """Ask the diglot running the response to cancel it; False when nobody runs it."""

    @abstractmethod
    async def run_progress(self, tenant: str, response_id: str) -> bytes | None:
        """The running response as its diglot last wrote it; None if it wrote none or is done."""

    @abstractmethod
    async def lapsed_runs(self, owner: str, lease: float) -> list[LapsedRun]:
        """Take the runs whose lease ran out: leased to `owner` for `lease` seconds, for it to end
        them (`end_run`); until then a poll still sees their progress."""

    @abstractmethod
    async def keep_events(
        self, response_id: str, created_at: float, frames: Sequence[tuple[int, bytes]], cap: int
    ) -> None:
        """Append a response's events (sequence number, frame), numbered on from those kept.

        Past `cap` bytes the oldest go, the last one always stays; a batch that does not follow
        on from the last one kept (one was lost) starts the kept events over.
        """

    @abstractmethod
    async def kept_events(self, response_id: str, after: int) -> KeptEvents:
        """The kept events numbered after `after` (the caller checked whose response it is)."""

    @abstractmethod
    async def expire(self) -> int:
        """Remove what outlived the TTL; how many responses and conversations went."""

    @abstractmethod
    async def used_bytes(self) -> int:
        """What the stored responses count against the byte budget."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; a closed store raises StoreUnavailable."""

    async def expire_forever(self, interval: float) -> None:
        """The background sweep; a failed sweep is logged and tried again next time."""
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.expire()
            except StoreUnavailable as exc:
                log.warning("store_expiry_failed", error=str(exc))
            else:
                if removed:
                    log.info("store_expired", entries=removed)

    def expires_at(self, record: Record) -> float:
        return record.created_at + self.ttl

    def conversation_expires_at(self) -> float:
        """A conversation is kept for the TTL after its last change."""
        return self.clock() + self.ttl


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of a response's input items."""

    data: list[dict[str, object]]
    has_more: bool


def page_items(
    items: list[dict[str, object]], limit: int, after: str | None, order: Order
) -> ItemPage | None:
    """`limit` items after the one with id `after` in `order`; None when `after` is unknown."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            return None
        start = ids.index(after) + 1
    data = ordered[start : start + limit]
    return ItemPage(data, start + limit < len(ordered))


def repeated_id(items: list[StoredItem]) -> str | None:
    """The first item id given twice in one write, if any."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            return item.id
        seen.add(item.id)
    return None


def slice_items(
    items: list[StoredItem], order: Order, after: str | None, limit: int | None
) -> ItemSlice | None:
    """The slice of `items` (oldest first) a backend holding them all in order answers with."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [item.id for item in ordered]
        if after not in ids:
            return None
        start = ids.index(after) + 1
    end = len(ordered) if limit is None else start + limit
    return ItemSlice(ordered[start:end], end < len(ordered))


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """systemd's STATE_DIRECTORY when set, else the XDG state directory of the user."""
    environ = os.environ if env is None else env
    systemd = environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "diglot"


def open_store(url: str, ttl: float, max_bytes: int | None, clock: Clock = time.time) -> Store:
    """The backend a `--store` URL names (its scheme was checked when the settings loaded)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from diglot.proxy.store.memory import MemoryStore

        return MemoryStore(ttl, max_bytes, clock)
    if scheme == "sqlite":
        from diglot.proxy.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), ttl, max_bytes, clock)
    if scheme == "redis":
        from diglot.proxy.store.redis import RedisStore

        return RedisStore(url, ttl, max_bytes, clock)
    raise ValueError(f"unknown store URL scheme {scheme!r}")


def sqlite_path(url: str) -> Path:
    """`sqlite:///abs/path.db` -> /abs/path.db; `sqlite://rel/path.db` is relative."""
    path = url.removeprefix("sqlite://")
    return Path("/" + path.lstrip("/") if path.startswith("/") else path)
