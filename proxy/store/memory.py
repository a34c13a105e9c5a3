"""`memory://`: responses kept in this process, bounded by a byte budget with LRU eviction."""

from __future__ import annotations

from collections import OrderedDict

from diglot.proxy.store import MAX_CHAIN, Clock, Record, Store, StoreUnavailable


class MemoryStore(Store):
    """For tests and throwaway use: lost on restart and not shared between processes."""

    def __init__(self, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        self._records: OrderedDict[str, Record] = OrderedDict()  # least recently used first
        self._items: dict[str, str] = {}  # item id -> response id
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

    async def expire(self) -> int:
        self._check()
        now = self.clock()
        expired = [rid for rid, rec in self._records.items() if self.expires_at(rec) <= now]
        for response_id in expired:
            self._remove(response_id)
        return len(expired)

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
