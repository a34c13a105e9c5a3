"""A WebSocket connection's own responses in front of the shared store.

Over WebSocket a client may continue a response it asked not to store: OpenAI keeps the
connection's recent responses in memory for it. So does diglot, here: every response of the
connection is kept locally (the most recent ones, within a byte cap), and those with `store`
true go to the shared store as well, where any connection and any replica finds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from diglot.proxy.store import (
    MAX_CHAIN,
    Conversation,
    ItemSlice,
    KeptEvents,
    LapsedRun,
    Order,
    Record,
    Renewal,
    Store,
    StoredItem,
)
from diglot.proxy.store.memory import MemoryStore

LOCAL_BYTES = 32 * 1024 * 1024  # one connection's responses, least recently used out first


class ConnectionStore(Store):
    """Reads look here first, then in the shared store; a chain may cross from one to the other."""

    def __init__(self, shared: Store, max_bytes: int = LOCAL_BYTES) -> None:
        super().__init__(shared.ttl, max_bytes, shared.clock)
        self.shared = shared
        self._local = MemoryStore(shared.ttl, max_bytes, shared.clock)

    async def put(self, record: Record) -> None:
        """`record.shared` ones are written through, and only acknowledged once shared."""
        if record.shared:
            await self.shared.put(record)
        await self._local.put(record)

    async def get(self, tenant: str, response_id: str) -> Record | None:
        found = await self._local.get(tenant, response_id)
        return found if found is not None else await self.shared.get(tenant, response_id)

    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        newest_first: list[Record] = []
        wanted: str | None = response_id
        while wanted is not None and len(newest_first) < MAX_CHAIN:
            record = await self._local.get(tenant, wanted)
            if record is not None:
                newest_first.append(record)
                wanted = record.previous_id
                continue
            stored = await self.shared.chain(tenant, wanted)
            if stored is None:
                break
            newest_first += reversed(stored)
            wanted = stored[0].previous_id
        return newest_first[::-1] or None

    async def delete(self, tenant: str, response_id: str) -> bool:
        here = await self._local.delete(tenant, response_id)
        there = await self.shared.delete(tenant, response_id)
        return here or there

    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        found = await self._local.locate(tenant, item_ids)
        rest = [item_id for item_id in item_ids if item_id not in found]
        if rest:
            found.update(await self.shared.locate(tenant, rest))
        return found

    async def forget(self, tenant: str, response_id: str) -> None:
        """Drop a response from this connection only (a continuation of it failed)."""
        await self._local.delete(tenant, response_id)

    async def expire(self) -> int:
        return await self._local.expire()

    async def used_bytes(self) -> int:
        return await self._local.used_bytes()

    async def close(self) -> None:
        """The connection's own records only: the shared store belongs to the app."""
        await self._local.close()

    # Conversations are the shared store's alone: a connection keeps none of its own.

    async def put_conversation(self, conversation: Conversation, items: list[StoredItem]) -> None:
        await self.shared.put_conversation(conversation, items)

    async def get_conversation(self, tenant: str, conversation_id: str) -> Conversation | None:
        return await self.shared.get_conversation(tenant, conversation_id)

    async def set_conversation_metadata(
        self, tenant: str, conversation_id: str, metadata: bytes
    ) -> Conversation | None:
        return await self.shared.set_conversation_metadata(tenant, conversation_id, metadata)

    async def delete_conversation(self, tenant: str, conversation_id: str) -> bool:
        return await self.shared.delete_conversation(tenant, conversation_id)

    async def add_conversation_items(
        self, tenant: str, conversation_id: str, items: list[StoredItem]
    ) -> bool:
        return await self.shared.add_conversation_items(tenant, conversation_id, items)

    async def conversation_items(
        self,
        tenant: str,
        conversation_id: str,
        *,
        order: Order = "asc",
        after: str | None = None,
        limit: int | None = None,
    ) -> ItemSlice | None:
        return await self.shared.conversation_items(
            tenant, conversation_id, order=order, after=after, limit=limit
        )

    async def get_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> StoredItem | None:
        return await self.shared.get_conversation_item(tenant, conversation_id, item_id)

    async def delete_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        return await self.shared.delete_conversation_item(tenant, conversation_id, item_id)

    # Background responses are the shared store's alone too (WebSocket turns are never one).

    async def claim_run(self, response_id: str, tenant: str, owner: str, lease: float) -> None:
        await self.shared.claim_run(response_id, tenant, owner, lease)

    async def renew_runs(
        self, owner: str, progress: Mapping[str, bytes | None], lease: float
    ) -> Renewal:
        return await self.shared.renew_runs(owner, progress, lease)

    async def end_run(self, response_id: str) -> None:
        await self.shared.end_run(response_id)

    async def cancel_run(self, tenant: str, response_id: str) -> bool:
        return await self.shared.cancel_run(tenant, response_id)

    async def run_progress(self, tenant: str, response_id: str) -> bytes | None:
        return await self.shared.run_progress(tenant, response_id)

    async def lapsed_runs(self, owner: str, lease: float) -> list[LapsedRun]:
        return await self.shared.lapsed_runs(owner, lease)

    async def keep_events(
        self, response_id: str, created_at: float, frames: Sequence[tuple[int, bytes]], cap: int
    ) -> None:
        await self.shared.keep_events(response_id, created_at, frames, cap)

    async def kept_events(self, response_id: str, after: int) -> KeptEvents:
        return await self.shared.kept_events(response_id, after)
