"""`memory://`: responses and conversations kept in this process; responses are bounded by a
byte budget with LRU eviction."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from diglot.proxy.store import (
    MAX_CHAIN,
    Clock,
    Conversation,
    ItemIdTaken,
    ItemSlice,
    Order,
    Record,
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


class MemoryStore(Store):
    """For tests and throwaway use: lost on restart and not shared between processes."""

    def __init__(self, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        self._records: OrderedDict[str, Record] = OrderedDict()  # least recently used first
        self._items: dict[str, str] = {}  # item id -> response id
        self._conversations: dict[str, _Held] = {}
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

    async def expire(self) -> int:
        self._check()
        now = self.clock()
        expired = [rid for rid, rec in self._records.items() if self.expires_at(rec) <= now]
        for response_id in expired:
            self._remove(response_id)
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

    def _remove(self, response_id: str) -> None:
        record = self._records.pop(response_id, None)
        if record is None:
            return
        self._bytes -= record.size
        for item_id in record.item_ids:
            if self._items.get(item_id) == response_id:
                del self._items[item_id]
