"""The one contract every store backend keeps, run against memory, a real SQLite file and a
real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from diglot.proxy.store import (
    DAY,
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
    open_store,
)
from diglot.proxy.store.memory import MemoryStore
from tests.redis_server import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

TTL = 30 * DAY
START = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


MakeStore = Callable[..., Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MakeStore]:
    """A factory of stores of one backend, all sharing one place (file, Redis database)."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path}/responses.db"
    else:
        url = request.getfixturevalue("redis_url")
    made: list[Store] = []

    def make(ttl: float = TTL, max_bytes: int | None = None) -> Store:
        store = open_store(url, ttl, max_bytes, clock)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


def record(
    rid: str,
    previous: str | None = None,
    tenant: str = "t1",
    body: bytes | None = None,
    items: tuple[str, ...] = (),
    at: float = START,
) -> Record:
    return Record(rid, tenant, previous, at, body or f"body of {rid}".encode(), items)


def ids(records: list[Record] | None) -> list[str] | None:
    return None if records is None else [r.id for r in records]


async def test_put_then_get(store: Store) -> None:
    await store.put(record("resp_a", items=("msg_1",)))
    got = await store.get("t1", "resp_a")
    assert got == Record("resp_a", "t1", None, START, b"body of resp_a")
    assert await store.get("t1", "resp_unknown") is None


async def test_chain_is_oldest_first_from_any_point(store: Store) -> None:
    await store.put(record("resp_a"))
    await store.put(record("resp_b", "resp_a"))
    await store.put(record("resp_c", "resp_b"))
    chain = await store.chain("t1", "resp_c")
    assert ids(chain) == ["resp_a", "resp_b", "resp_c"]
    assert chain is not None and [r.body for r in chain] == [
        b"body of resp_a",
        b"body of resp_b",
        b"body of resp_c",
    ]
    assert [r.previous_id for r in chain] == [None, "resp_a", "resp_b"]
    assert ids(await store.chain("t1", "resp_b")) == ["resp_a", "resp_b"]
    assert await store.chain("t1", "resp_unknown") is None


async def test_a_chain_with_a_missing_link_stops_short_naming_it(store: Store) -> None:
    await store.put(record("resp_a"))
    await store.put(record("resp_b", "resp_a"))
    await store.put(record("resp_c", "resp_b"))
    assert await store.delete("t1", "resp_b")
    chain = await store.chain("t1", "resp_c")
    assert ids(chain) == ["resp_c"]
    assert chain is not None and chain[0].previous_id == "resp_b"


async def test_500_turns_cost_linear_space_and_resolve_in_order(store: Store) -> None:
    body = b"x" * 200
    previous = None
    for turn in range(500):
        rid = f"resp_{turn:03d}"
        await store.put(record(rid, previous, body=body, items=(f"msg_{turn:03d}",)))
        previous = rid
    one = record("resp_000", body=body, items=("msg_000",)).size
    assert await store.used_bytes() == 500 * one
    chain = await store.chain("t1", "resp_499")
    assert ids(chain) == [f"resp_{turn:03d}" for turn in range(500)]


async def test_delete(store: Store) -> None:
    await store.put(record("resp_a", items=("msg_1",)))
    assert await store.delete("t1", "resp_a") is True
    assert await store.get("t1", "resp_a") is None
    assert await store.locate("t1", ["msg_1"]) == {}
    assert await store.delete("t1", "resp_a") is False
    assert await store.used_bytes() == 0


async def test_a_response_stored_again_replaces_the_first(store: Store) -> None:
    """As a background response is: queued first, then finished, among other writes."""
    await store.put(record("resp_a", body=b"queued", items=("msg_in",)))
    again = record("resp_a", body=b"completed", items=("msg_in", "msg_out"))
    await asyncio.gather(store.put(record("resp_b")), store.put(again), store.put(record("resp_c")))
    stored = await store.get("t1", "resp_a")
    assert stored is not None and stored.body == b"completed"
    found = await store.locate("t1", ["msg_in", "msg_out"])
    assert {key: value.body for key, value in found.items()} == {
        "msg_in": b"completed",
        "msg_out": b"completed",
    }
    assert [await store.get("t1", rid) is not None for rid in ("resp_b", "resp_c")] == [True, True]
    sizes = again.size + record("resp_b").size + record("resp_c").size
    assert await store.used_bytes() == sizes


async def test_locate_finds_items_of_live_responses(store: Store) -> None:
    await store.put(record("resp_a", items=("msg_1", "fc_1")))
    await store.put(record("resp_b", "resp_a", items=("msg_2",)))
    found = await store.locate("t1", ["fc_1", "msg_2", "msg_unknown"])
    assert {key: value.id for key, value in found.items()} == {
        "fc_1": "resp_a",
        "msg_2": "resp_b",
    }
    assert found["msg_2"].body == b"body of resp_b"


async def test_entries_expire_after_the_ttl(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(ttl=60)
    await store.put(record("resp_old", items=("msg_old",)))
    clock.now += 30
    await store.put(record("resp_new", "resp_old", at=clock.now))
    clock.now += 31
    assert await store.get("t1", "resp_old") is None
    assert await store.chain("t1", "resp_old") is None
    assert await store.locate("t1", ["msg_old"]) == {}
    assert await store.delete("t1", "resp_old") is False
    chain = await store.chain("t1", "resp_new")
    assert ids(chain) == ["resp_new"]
    assert await store.expire() == 1
    assert await store.used_bytes() == record("resp_new", "resp_old").size
    clock.now += 30
    assert await store.expire() == 1
    assert await store.used_bytes() == 0


async def test_the_byte_budget_evicts_the_oldest(make_store: MakeStore, clock: FakeClock) -> None:
    size = record("resp_a", items=("item_resp_a",)).size
    store = make_store(max_bytes=2 * size)
    for offset, rid in enumerate(("resp_a", "resp_b", "resp_c")):
        await store.put(record(rid, at=START + offset, items=(f"item_{rid}",)))
    assert await store.get("t1", "resp_a") is None
    assert await store.locate("t1", ["item_resp_a"]) == {}
    assert (await store.get("t1", "resp_b")) is not None
    assert (await store.get("t1", "resp_c")) is not None
    assert await store.used_bytes() == 2 * size


async def test_a_response_larger_than_the_budget_is_still_kept(make_store: MakeStore) -> None:
    store = make_store(max_bytes=10)
    await store.put(record("resp_a"))
    await store.put(record("resp_b", at=START + 1))
    assert await store.get("t1", "resp_a") is None
    assert await store.get("t1", "resp_b") is not None


async def test_another_tenant_sees_nothing(store: Store) -> None:
    await store.put(record("resp_a", items=("msg_1",)))
    await store.put(record("resp_b", "resp_a", tenant="t2"))
    assert await store.get("t2", "resp_a") is None
    assert await store.chain("t2", "resp_a") is None
    assert ids(await store.chain("t2", "resp_b")) == ["resp_b"]
    assert await store.locate("t2", ["msg_1"]) == {}
    assert await store.delete("t2", "resp_a") is False
    assert await store.get("t1", "resp_a") is not None


async def test_stores_on_one_place_share_responses(make_store: MakeStore) -> None:
    if isinstance(make_store(), MemoryStore):
        pytest.skip("memory stores are private to one store object")
    first, second = make_store(), make_store()
    await first.put(record("resp_a"))
    await second.put(record("resp_b", "resp_a"))
    assert ids(await first.chain("t1", "resp_b")) == ["resp_a", "resp_b"]
    assert await second.delete("t1", "resp_a")
    assert await first.get("t1", "resp_a") is None


async def test_a_closed_store_is_unavailable(store: Store) -> None:
    await store.put(record("resp_a"))
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("t1", "resp_a")
    with pytest.raises(StoreUnavailable):
        await store.put(record("resp_b"))


def conversation(cid: str = "conv_a", tenant: str = "t1", metadata: bytes = b"{}") -> Conversation:
    return Conversation(cid, tenant, START, metadata)


def items(*item_ids: str) -> list[StoredItem]:
    return [StoredItem(item_id, f"json of {item_id}".encode()) for item_id in item_ids]


def item_ids(found: ItemSlice | None) -> tuple[list[str], bool] | None:
    return None if found is None else ([item.id for item in found.items], found.has_more)


async def test_a_conversation_keeps_its_items_in_order(store: Store) -> None:
    await store.put_conversation(conversation(metadata=b'{"k":"v"}'), items("msg_1", "msg_2"))
    assert await store.get_conversation("t1", "conv_a") == conversation(metadata=b'{"k":"v"}')
    assert await store.add_conversation_items("t1", "conv_a", items("fc_3", "msg_0")) is True
    found = await store.conversation_items("t1", "conv_a")
    assert found == ItemSlice(items("msg_1", "msg_2", "fc_3", "msg_0"), False)
    assert await store.get_conversation_item("t1", "conv_a", "fc_3") == items("fc_3")[0]
    assert await store.get_conversation_item("t1", "conv_a", "msg_9") is None
    assert await store.get_conversation("t1", "conv_unknown") is None


async def test_conversation_items_come_in_slices_either_way(store: Store) -> None:
    await store.put_conversation(conversation(), items("i1", "i2", "i3", "i4", "i5"))

    async def slice_of(
        order: Order = "asc", after: str | None = None, limit: int | None = None
    ) -> tuple[list[str], bool] | None:
        found = await store.conversation_items(
            "t1", "conv_a", order=order, after=after, limit=limit
        )
        return item_ids(found)

    assert await slice_of(limit=2) == (["i1", "i2"], True)
    assert await slice_of(limit=2, after="i2") == (["i3", "i4"], True)
    assert await slice_of(limit=2, after="i3") == (["i4", "i5"], False)
    assert await slice_of(limit=5) == (["i1", "i2", "i3", "i4", "i5"], False)
    assert await slice_of(order="desc", limit=2) == (["i5", "i4"], True)
    assert await slice_of(order="desc", limit=3, after="i4") == (["i3", "i2", "i1"], False)
    assert await slice_of(order="desc", after="i1") == ([], False)
    assert await slice_of(after="i5", limit=1) == ([], False)
    assert await slice_of(after="i9") is None
    assert item_ids(await store.conversation_items("t1", "conv_unknown")) is None


async def test_an_empty_conversation_has_no_items(store: Store) -> None:
    await store.put_conversation(conversation(), [])
    assert await store.conversation_items("t1", "conv_a", limit=20) == ItemSlice([], False)
    assert await store.conversation_items("t1", "conv_a", order="desc") == ItemSlice([], False)


async def test_an_item_id_is_held_once_per_conversation(store: Store) -> None:
    with pytest.raises(ItemIdTaken) as repeated:
        await store.put_conversation(conversation(), items("msg_1", "msg_2", "msg_1"))
    assert repeated.value.item_id == "msg_1"
    assert await store.get_conversation("t1", "conv_a") is None
    await store.put_conversation(conversation(), items("msg_1"))
    await store.put_conversation(conversation("conv_b"), items("msg_1"))  # another conversation
    with pytest.raises(ItemIdTaken) as taken:
        await store.add_conversation_items("t1", "conv_a", items("msg_2", "msg_1"))
    assert taken.value.item_id == "msg_1"
    with pytest.raises(ItemIdTaken):
        await store.add_conversation_items("t1", "conv_a", items("msg_3", "msg_3"))
    assert item_ids(await store.conversation_items("t1", "conv_a")) == (["msg_1"], False)


async def test_metadata_is_replaced(store: Store) -> None:
    await store.put_conversation(conversation(metadata=b'{"a":"1"}'), [])
    updated = await store.set_conversation_metadata("t1", "conv_a", b'{"b":"2"}')
    assert updated == conversation(metadata=b'{"b":"2"}')
    assert await store.get_conversation("t1", "conv_a") == updated
    assert await store.set_conversation_metadata("t1", "conv_unknown", b"{}") is None


async def test_deleting_an_item_answers_the_conversation(store: Store) -> None:
    await store.put_conversation(conversation(), items("msg_1", "msg_2", "msg_3"))
    assert await store.delete_conversation_item("t1", "conv_a", "msg_2") == conversation()
    assert await store.delete_conversation_item("t1", "conv_a", "msg_2") is None
    assert await store.delete_conversation_item("t1", "conv_unknown", "msg_1") is None
    assert await store.get_conversation_item("t1", "conv_a", "msg_2") is None
    assert item_ids(await store.conversation_items("t1", "conv_a")) == (["msg_1", "msg_3"], False)
    assert await store.add_conversation_items("t1", "conv_a", items("msg_2")) is True
    found = await store.conversation_items("t1", "conv_a", after="msg_1")
    assert item_ids(found) == (["msg_3", "msg_2"], False)


async def test_deleting_a_conversation_deletes_its_items(store: Store) -> None:
    await store.put_conversation(conversation(), items("msg_1"))
    assert await store.delete_conversation("t1", "conv_a") is True
    assert await store.get_conversation("t1", "conv_a") is None
    assert await store.get_conversation_item("t1", "conv_a", "msg_1") is None
    assert await store.conversation_items("t1", "conv_a") is None
    assert await store.add_conversation_items("t1", "conv_a", items("msg_2")) is False
    assert await store.delete_conversation("t1", "conv_a") is False
    await store.put_conversation(conversation(), [])  # the same id again starts empty
    assert await store.conversation_items("t1", "conv_a") == ItemSlice([], False)


async def test_another_tenant_sees_no_conversation(store: Store) -> None:
    await store.put_conversation(conversation(), items("msg_1"))
    assert await store.get_conversation("t2", "conv_a") is None
    assert await store.conversation_items("t2", "conv_a") is None
    assert await store.get_conversation_item("t2", "conv_a", "msg_1") is None
    assert await store.add_conversation_items("t2", "conv_a", items("msg_2")) is False
    assert await store.set_conversation_metadata("t2", "conv_a", b'{"x":"y"}') is None
    assert await store.delete_conversation_item("t2", "conv_a", "msg_1") is None
    assert await store.delete_conversation("t2", "conv_a") is False
    assert await store.conversation_items("t1", "conv_a") == ItemSlice(items("msg_1"), False)
    assert await store.get_conversation("t1", "conv_a") == conversation()


async def test_a_conversation_lasts_the_ttl_after_its_last_change(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(ttl=60)
    await store.put_conversation(conversation(), items("msg_1"))
    await store.put_conversation(conversation("conv_idle"), [])
    clock.now += 50
    assert await store.add_conversation_items("t1", "conv_a", items("msg_2"))
    clock.now += 50  # 100 s after both began, 50 s after conv_a changed
    assert await store.get_conversation("t1", "conv_idle") is None
    assert await store.conversation_items("t1", "conv_idle") is None
    assert item_ids(await store.conversation_items("t1", "conv_a")) == (["msg_1", "msg_2"], False)
    assert await store.expire() == 1
    clock.now += 10
    assert await store.get_conversation("t1", "conv_a") is None
    assert await store.expire() == 1
    await store.put_conversation(conversation("conv_new"), [])
    assert await store.expire() == 0


async def test_conversations_count_nothing_against_the_budget(make_store: MakeStore) -> None:
    store = make_store(max_bytes=2 * record("resp_a").size)
    await store.put_conversation(conversation(), items("msg_1"))
    await store.put(record("resp_a"))
    await store.put(record("resp_b"))
    assert await store.used_bytes() == 2 * record("resp_a").size
    assert await store.get("t1", "resp_a") is not None
    assert await store.get_conversation("t1", "conv_a") is not None


async def test_stores_on_one_place_share_conversations(make_store: MakeStore) -> None:
    if isinstance(make_store(), MemoryStore):
        pytest.skip("memory stores are private to one store object")
    first, second = make_store(), make_store()
    await first.put_conversation(conversation(), items("msg_1"))
    assert await second.add_conversation_items("t1", "conv_a", items("msg_2"))
    found = await first.conversation_items("t1", "conv_a")
    assert item_ids(found) == (["msg_1", "msg_2"], False)
    assert await second.delete_conversation("t1", "conv_a")
    assert await first.get_conversation("t1", "conv_a") is None


async def test_a_closed_store_has_no_conversations(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.put_conversation(conversation(), [])
    with pytest.raises(StoreUnavailable):
        await store.conversation_items("t1", "conv_a")


def frames(*seqs: int) -> list[tuple[int, bytes]]:
    """Events numbered `seqs`, each frame 10 bytes long."""
    return [(seq, f"frame {seq:04d}".encode()) for seq in seqs]


def kept(*seqs: int, first: int, following: int) -> KeptEvents:
    return KeptEvents([frame for _, frame in frames(*seqs)], first, following)


async def test_kept_events_come_after_a_sequence_number(store: Store) -> None:
    assert await store.kept_events("resp_a", -1) == KeptEvents([], 0, 0)
    await store.keep_events("resp_a", START, frames(0, 1, 2), cap=1000)
    await store.keep_events("resp_a", START, frames(3, 4), cap=1000)
    assert await store.kept_events("resp_a", -1) == kept(0, 1, 2, 3, 4, first=0, following=5)
    assert await store.kept_events("resp_a", 2) == kept(3, 4, first=0, following=5)
    assert await store.kept_events("resp_a", 4) == kept(first=0, following=5)
    assert await store.kept_events("resp_a", 10**12) == kept(first=0, following=5)
    assert await store.kept_events("resp_b", -1) == KeptEvents([], 0, 0)


async def test_kept_events_past_the_cap_lose_the_oldest(store: Store) -> None:
    await store.keep_events("resp_a", START, frames(0, 1, 2), cap=25)
    assert await store.kept_events("resp_a", -1) == kept(1, 2, first=1, following=3)
    await store.keep_events("resp_a", START, frames(3, 4), cap=25)
    assert await store.kept_events("resp_a", 0) == kept(3, 4, first=3, following=5)
    await store.keep_events("resp_a", START, frames(5), cap=5)  # the last one always stays
    assert await store.kept_events("resp_a", -1) == kept(5, first=5, following=6)


async def test_kept_events_go_on_only_from_the_last_one(store: Store) -> None:
    await store.keep_events("resp_a", START, frames(0, 1), cap=1000)
    await store.keep_events("resp_a", START, frames(1, 2), cap=1000)  # 1 again: kept once
    assert await store.kept_events("resp_a", -1) == kept(0, 1, 2, first=0, following=3)
    await store.keep_events("resp_a", START, frames(5, 6), cap=1000)  # 3 and 4 were lost
    assert await store.kept_events("resp_a", -1) == kept(5, 6, first=5, following=7)


async def test_kept_events_go_with_their_response(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(ttl=60)
    for rid in ("resp_a", "resp_b"):
        await store.put(record(rid))
        await store.keep_events(rid, START, frames(0), cap=1000)
    assert await store.delete("t2", "resp_a") is False
    assert await store.kept_events("resp_a", -1) == kept(0, first=0, following=1)
    assert await store.delete("t1", "resp_a") is True
    assert await store.kept_events("resp_a", -1) == KeptEvents([], 0, 0)
    await store.put(record("resp_b"))  # stored again as it goes on: its events stay
    assert await store.kept_events("resp_b", -1) == kept(0, first=0, following=1)
    clock.now += 61
    assert await store.kept_events("resp_b", -1) == KeptEvents([], 0, 0)
    assert await store.expire() == 1  # responses and conversations only are counted


async def test_the_budget_evicts_kept_events_with_their_response(make_store: MakeStore) -> None:
    store = make_store(max_bytes=record("resp_a").size)
    await store.put(record("resp_a"))
    await store.keep_events("resp_a", START, frames(0), cap=1000)
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    await store.put(record("resp_b", at=START + 1))
    assert await store.get("t1", "resp_a") is None
    assert await store.kept_events("resp_a", -1) == KeptEvents([], 0, 0)
    assert await store.cancel_run("t1", "resp_a") is False


async def test_a_run_is_renewed_asked_to_cancel_and_ended(store: Store) -> None:
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    assert await store.renew_runs("diglot_1", {"resp_a": b"progress 1"}, lease=10) == Renewal()
    assert await store.run_progress("t1", "resp_a") == b"progress 1"
    assert await store.renew_runs("diglot_1", {"resp_a": None}, lease=10) == Renewal()
    assert await store.run_progress("t1", "resp_a") == b"progress 1"
    assert await store.run_progress("t2", "resp_a") is None
    assert await store.cancel_run("t2", "resp_a") is False
    assert await store.cancel_run("t1", "resp_a") is True
    renewal = await store.renew_runs("diglot_1", {"resp_a": None}, lease=10)
    assert renewal == Renewal(cancel=frozenset({"resp_a"}))
    await store.end_run("resp_a")
    assert await store.run_progress("t1", "resp_a") is None
    assert await store.cancel_run("t1", "resp_a") is False
    renewal = await store.renew_runs("diglot_1", {"resp_a": None}, lease=10)
    assert renewal == Renewal(lost=frozenset({"resp_a"}))


async def test_a_lapsed_run_is_taken_once(store: Store, clock: FakeClock) -> None:
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    await store.claim_run("resp_b", "t1", "diglot_1", lease=10)
    clock.now += 5
    await store.renew_runs("diglot_1", {"resp_b": b"progress b"}, lease=10)
    assert await store.lapsed_runs("diglot_2", lease=10) == []
    clock.now += 6
    assert await store.lapsed_runs("diglot_2", lease=10) == [LapsedRun("resp_a", "t1", None)]
    assert await store.lapsed_runs("diglot_3", lease=10) == []
    renewal = await store.renew_runs("diglot_1", {"resp_a": None, "resp_b": None}, lease=10)
    assert renewal == Renewal(lost=frozenset({"resp_a"}))
    await store.end_run("resp_a")
    clock.now += 11
    assert await store.lapsed_runs("diglot_2", lease=10) == [
        LapsedRun("resp_b", "t1", b"progress b")
    ]


async def test_a_taken_run_shows_its_progress_and_lapses_again_until_ended(
    store: Store, clock: FakeClock
) -> None:
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    await store.renew_runs("diglot_1", {"resp_a": b"progress a"}, lease=10)
    clock.now += 11
    assert await store.lapsed_runs("diglot_2", lease=10) == [
        LapsedRun("resp_a", "t1", b"progress a")
    ]
    assert await store.run_progress("t1", "resp_a") == b"progress a"
    clock.now += 9
    assert await store.lapsed_runs("diglot_3", lease=10) == []
    clock.now += 2
    assert await store.lapsed_runs("diglot_3", lease=10) == [
        LapsedRun("resp_a", "t1", b"progress a")
    ]
    await store.end_run("resp_a")
    assert await store.run_progress("t1", "resp_a") is None
    clock.now += 11
    assert await store.lapsed_runs("diglot_3", lease=10) == []


async def test_only_the_owner_renews_a_run(store: Store) -> None:
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    renewal = await store.renew_runs("diglot_2", {"resp_a": b"not mine"}, lease=10)
    assert renewal == Renewal(lost=frozenset({"resp_a"}))
    assert await store.run_progress("t1", "resp_a") is None


async def test_deleting_a_response_ends_its_run(store: Store) -> None:
    await store.put(record("resp_a"))
    await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    assert await store.delete("t1", "resp_a") is True
    renewal = await store.renew_runs("diglot_1", {"resp_a": None}, lease=10)
    assert renewal == Renewal(lost=frozenset({"resp_a"}))


async def test_stores_on_one_place_share_runs_and_events(make_store: MakeStore) -> None:
    if isinstance(make_store(), MemoryStore):
        pytest.skip("memory stores are private to one store object")
    first, second = make_store(), make_store()
    await first.claim_run("resp_a", "t1", "diglot_1", lease=10)
    await first.keep_events("resp_a", START, frames(0, 1), cap=1000)
    await first.renew_runs("diglot_1", {"resp_a": b"progress"}, lease=10)
    assert await second.kept_events("resp_a", 0) == kept(1, first=0, following=2)
    assert await second.run_progress("t1", "resp_a") == b"progress"
    assert await second.cancel_run("t1", "resp_a") is True
    renewal = await first.renew_runs("diglot_1", {"resp_a": None}, lease=10)
    assert renewal == Renewal(cancel=frozenset({"resp_a"}))


async def test_a_closed_store_keeps_no_runs_or_events(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
    with pytest.raises(StoreUnavailable):
        await store.keep_events("resp_a", START, frames(0), cap=1000)
    with pytest.raises(StoreUnavailable):
        await store.kept_events("resp_a", -1)


async def test_the_memory_budget_evicts_the_least_recently_used(clock: FakeClock) -> None:
    store = MemoryStore(TTL, 2 * record("resp_a").size, clock)
    await store.put(record("resp_a"))
    await store.put(record("resp_b"))
    assert await store.get("t1", "resp_a") is not None
    await store.put(record("resp_c"))
    assert await store.get("t1", "resp_b") is None
    assert await store.get("t1", "resp_a") is not None


async def test_an_unwritable_sqlite_path_is_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = open_store(f"sqlite://{blocker}/responses.db", TTL, None, clock)
    with pytest.raises(StoreUnavailable, match="sqlite store"):
        await store.put(record("resp_a"))
    with pytest.raises(StoreUnavailable):
        await store.chain("t1", "resp_a")
    await store.close()


async def test_an_unreachable_redis_is_unavailable(free_port: int, clock: FakeClock) -> None:
    store = open_store(f"redis://:secret@127.0.0.1:{free_port}/0", TTL, None, clock)
    with pytest.raises(StoreUnavailable, match="redis store") as caught:
        await store.put(record("resp_a"))
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreUnavailable):
        await store.chain("t1", "resp_a")
    await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from diglot.proxy.store import Record, open_store

    async def main() -> None:
        store = open_store("sqlite://" + sys.argv[1], 3600.0, None)
        await store.put(Record("resp_kept", "t1", None, time.time(), b"acknowledged"))
        print("stored", flush=True)
        sys.stdin.read()

    asyncio.run(main())
    """
)


async def test_an_acknowledged_sqlite_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    try:
        assert writer.stdout.readline() == "stored\n"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdin.close()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    store = open_store(f"sqlite://{path}", 3600.0, None)
    try:
        got = await store.get("t1", "resp_kept")
    finally:
        await store.close()
    assert got is not None and got.body == b"acknowledged"


async def test_the_sqlite_file_is_private(tmp_path: Path, clock: FakeClock) -> None:
    store = open_store(f"sqlite://{tmp_path}/state/responses.db", TTL, None, clock)
    await store.put(record("resp_a"))
    await store.close()
    for path in (tmp_path / "state").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
