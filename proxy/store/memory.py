"""`memory://`: responses and conversations kept in this process; responses are bounded by a
byte budget with LRU eviction."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice

from diglot.proxy.store import (
    MAX_CHAIN,
    Clock,
    Conversation,
    ItemIdTaken,
    ItemSlice,
    KeptEvents,
    LapsedRun,
    Order,
    Record,
    Renewal,
    Store,
    StoredItem,
    StoreUnavailable,
    repeated_id,
    slice_items,
)


@dataclass(slots=True)
class _Held:
    """A conversation, until when it is kept, and its items in the order they were added."""

    conversation: Conversation
    expires_at: float
    items: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class _Run:
    """A background response's lease."""

    tenant: str
    owner: str
    until: float
    cancel: bool = False
    progress: bytes | None = None


@dataclass(slots=True)
class _Log:
    """A background response's kept events: those numbered from `first` up to `next`."""

    expires_at: float
    first: int
    next: int
    size: int = 0
    frames: deque[bytes] = field(default_factory=deque)


class MemoryStore(Store):
    """For tests and throwaway use: lost on restart and not shared between processes."""

    def __init__(self, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        self._records: OrderedDict[str, Record] = OrderedDict()  # least recently used first
        self._items: dict[str, str] = {}  # item id -> response id
        self._conversations: dict[str, _Held] = {}
        self._runs: dict[str, _Run] = {}
        self._logs: dict[str, _Log] = {}
        self._bytes = 0
        self._closed = False

    async def put(self, record: Record) -> None:
        self._check()
        self._remove(record.id)
        self._records[record.id] = record
        self._bytes += record.size
        for item_id in record.item_ids:
            self._items[item_id] = record.id
        if self.max_bytes is not None:
            self._evict(self.max_bytes, record.id)

    async def get(self, tenant: str, response_id: str) -> Record | None:
        self._check()
        return self._live(tenant, response_id)

    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        self._check()
        head = self._live(tenant, response_id)
        if head is None:
            return None
        records = [head]
        previous = head.previous_id
        while previous is not None and len(records) < MAX_CHAIN:
            record = self._live(tenant, previous)
            if record is None:
                break
            records.append(record)
            previous = record.previous_id
        records.reverse()
        return records

    async def delete(self, tenant: str, response_id: str) -> bool:
        self._check()
        if self._live(tenant, response_id) is None:
            return False
        self._remove(response_id)
        self._forget(response_id)
        return True

    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        self._check()
        found: dict[str, Record] = {}
        for item_id in item_ids:
            response_id = self._items.get(item_id)
            record = None if response_id is None else self._live(tenant, response_id)
            if record is not None:
                found[item_id] = record
        return found

    async def put_conversation(self, conversation: Conversation, items: list[StoredItem]) -> None:
        self._check()
        taken = repeated_id(items)
        if taken is not None:
            raise ItemIdTaken(taken)
        held = _Held(conversation, self.conversation_expires_at())
        held.items = {item.id: item.body for item in items}
        self._conversations[conversation.id] = held

    async def get_conversation(self, tenant: str, conversation_id: str) -> Conversation | None:
        self._check()
        held = self._held(tenant, conversation_id)
        return None if held is None else held.conversation

    async def set_conversation_metadata(
        self, tenant: str, conversation_id: str, metadata: bytes
    ) -> Conversation | None:
        self._check()
        held = self._held(tenant, conversation_id)
        if held is None:
            return None
        held.conversation = replace(held.conversation, metadata=metadata)
        held.expires_at = self.conversation_expires_at()
        return held.conversation

    async def delete_conversation(self, tenant: str, conversation_id: str) -> bool:
        self._check()
        if self._held(tenant, conversation_id) is None:
            return False
        del self._conversations[conversation_id]
        return True

    async def add_conversation_items(
        self, tenant: str, conversation_id: str, items: list[StoredItem]
    ) -> bool:
        self._check()
        held = self._held(tenant, conversation_id)
        if held is None:
            return False
        taken = repeated_id(items) or next((i.id for i in items if i.id in held.items), None)
        if taken is not None:
            raise ItemIdTaken(taken)
        held.items.update((item.id, item.body) for item in items)
        held.expires_at = self.conversation_expires_at()
        return True

    async def conversation_items(
        self,
        tenant: str,
        conversation_id: str,
        *,
        order: Order = "asc",
        after: str | None = None,
        limit: int | None = None,
    ) -> ItemSlice | None:
        self._check()
        held = self._held(tenant, conversation_id)
        if held is None:
            return None
        items = [StoredItem(item_id, body) for item_id, body in held.items.items()]
        return slice_items(items, order, after, limit)

    async def get_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> StoredItem | None:
        self._check()
        held = self._held(tenant, conversation_id)
        body = None if held is None else held.items.get(item_id)
        return None if body is None else StoredItem(item_id, body)

    async def delete_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        self._check()
        held = self._held(tenant, conversation_id)
        if held is None or held.items.pop(item_id, None) is None:
            return None
        held.expires_at = self.conversation_expires_at()
        return held.conversation

    async def claim_run(self, response_id: str, tenant: str, owner: str, lease: float) -> None:
        self._check()
        self._runs[response_id] = _Run(tenant, owner, self.clock() + lease)

    async def renew_runs(
        self, owner: str, progress: Mapping[str, bytes | None], lease: float
    ) -> Renewal:
        self._check()
        until = self.clock() + lease
        cancel: set[str] = set()
        lost: set[str] = set()
        for response_id, made in progress.items():
            run = self._runs.get(response_id)
            if run is None or run.owner != owner:
                lost.add(response_id)
                continue
            run.until = until
            if made is not None:
                run.progress = made
            if run.cancel:
                cancel.add(response_id)
        return Renewal(frozenset(cancel), frozenset(lost))

    async def end_run(self, response_id: str) -> None:
        self._check()
        self._runs.pop(response_id, None)

    async def cancel_run(self, tenant: str, response_id: str) -> bool:
        self._check()
        run = self._runs.get(response_id)
        if run is None or run.tenant != tenant:
            return False
        run.cancel = True
        return True

    async def run_progress(self, tenant: str, response_id: str) -> bytes | None:
        self._check()
        run = self._runs.get(response_id)
        return None if run is None or run.tenant != tenant else run.progress

    async def lapsed_runs(self, owner: str, lease: float) -> list[LapsedRun]:
        self._check()
        now = self.clock()
        lapsed = [(rid, run) for rid, run in self._runs.items() if run.until <= now]
        for _, run in lapsed:
            run.owner, run.until = owner, now + lease
        return [LapsedRun(rid, run.tenant, run.progress) for rid, run in lapsed]

    async def keep_events(
        self, response_id: str, created_at: float, frames: Sequence[tuple[int, bytes]], cap: int
    ) -> None:
        self._check()
        if not frames:
            return
        log = self._logs.get(response_id)
        if log is None:
            first = frames[0][0]
            log = self._logs[response_id] = _Log(created_at + self.ttl, first, first)
        fresh = [(seq, frame) for seq, frame in frames if seq >= log.next]
        if not fresh:
            return
        if fresh[0][0] > log.next:  # one was lost: what is kept cannot be continued
            log.frames.clear()
            log.size, log.first = 0, fresh[0][0]
        for _, frame in fresh:
            log.frames.append(frame)
            log.size += len(frame)
        log.next = fresh[-1][0] + 1
        while log.size > cap and len(log.frames) > 1:
            log.size -= len(log.frames.popleft())
            log.first += 1

    async def kept_events(self, response_id: str, after: int) -> KeptEvents:
        self._check()
        log = self._logs.get(response_id)
        if log is None or log.expires_at <= self.clock():
            return KeptEvents([], 0, 0)
        start = max(after + 1 - log.first, 0)
        return KeptEvents(list(islice(log.frames, start, None)), log.first, log.next)

    async def expire(self) -> int:
        self._check()
        now = self.clock()
        expired = [rid for rid, rec in self._records.items() if self.expires_at(rec) <= now]
        for response_id in expired:
            self._remove(response_id)
        for response_id in [rid for rid, log in self._logs.items() if log.expires_at <= now]:
            self._forget(response_id)
        ended = [cid for cid, held in self._conversations.items() if held.expires_at <= now]
        for conversation_id in ended:
            del self._conversations[conversation_id]
        return len(expired) + len(ended)

    async def used_bytes(self) -> int:
        self._check()
        return self._bytes

    async def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")

    def _live(self, tenant: str, response_id: str) -> Record | None:
        """The tenant's unexpired record, marked as just used."""
        record = self._records.get(response_id)
        if record is None or record.tenant != tenant:
            return None
        if self.expires_at(record) <= self.clock():
            return None
        self._records.move_to_end(response_id)
        return record

    def _held(self, tenant: str, conversation_id: str) -> _Held | None:
        """The tenant's unexpired conversation."""
        held = self._conversations.get(conversation_id)
        if held is None or held.conversation.tenant != tenant:
            return None
        return held if held.expires_at > self.clock() else None

    def _evict(self, budget: int, keep: str) -> None:
        """Least recently used first; the record just stored stays even if alone too large."""
        while self._bytes > budget:
            oldest = next(iter(self._records))
            if oldest == keep:
                return
            self._remove(oldest)
            self._forget(oldest)

    def _forget(self, response_id: str) -> None:
        """What a response leaves beside its record: its run and its kept events."""
        self._runs.pop(response_id, None)
        self._logs.pop(response_id, None)

    def _remove(self, response_id: str) -> None:
        """The record alone: a record stored again replaces it, its run and events going on."""
        record = self._records.pop(response_id, None)
        if record is None:
            return
        self._bytes -= record.size
        for item_id in record.item_ids:
            if self._items.get(item_id) == response_id:
                del self._items[item_id]
