"""The SQLite store's own promises: group commit, durability per put, failures that stay in
their transaction, a clean close, eviction that cleans up after itself, a file and WAL that do
not grow without bound, and files of the first layout carried over."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from diglot.proxy.store import (
    DAY,
    Conversation,
    ItemIdTaken,
    ItemSlice,
    KeptEvents,
    Record,
    StoredItem,
    StoreUnavailable,
)
from diglot.proxy.store import sqlite as sqlite_store
from diglot.proxy.store.sqlite import SqliteStore

START = 1_700_000_000.0
TTL = 30 * DAY


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "responses.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path, TTL, None, clock)
    yield store
    await store.close()


def record(rid: str, body: bytes | None = None, items: tuple[str, ...] = ()) -> Record:
    return Record(rid, "t1", None, START, body or f"body of {rid}".encode(), items)


def stored_body(path: Path, rid: str) -> bytes | None:
    """What a fresh connection, as after a crash, reads of one record."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT body FROM records WHERE id = ?", (rid,)).fetchone()
    finally:
        db.close()
    return None if row is None else bytes(row[0])


def count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    finally:
        db.close()
    return int(rows)


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock, so the writes submitted meanwhile queue up."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    finally:
        db.close()


async def queued_then_released(
    lock: sqlite3.Connection, writes: list[Awaitable[object]], released: list[bool]
) -> list[object]:
    """Start every write, then release the lock: each is queued before the writer can commit."""
    tasks = [asyncio.ensure_future(write) for write in writes]

    def release() -> None:
        released.append(True)
        lock.execute("COMMIT")

    asyncio.get_running_loop().call_soon(release)  # after each task queued its write
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def test_concurrent_puts_share_one_transaction_and_each_waits_for_its_commit(
    store: SqliteStore, path: Path
) -> None:
    await store.put(record("resp_first"))
    released: list[bool] = []
    readable: list[str] = []

    async def put_and_read(rid: str) -> None:
        await store.put(record(rid))
        assert released == [True]
        assert stored_body(path, rid) == f"body of {rid}".encode()
        readable.append(rid)

    before = store.commits
    rids = [f"resp_{n:02d}" for n in range(32)]
    with write_lock(path) as lock:
        results = await queued_then_released(lock, [put_and_read(r) for r in rids], released)
    assert results == [None] * 32
    assert sorted(readable) == rids
    assert store.commits - before == 1


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux's SCHED_BATCH only")
async def test_the_stores_threads_never_preempt_the_event_loop(
    path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies: dict[str, int] = {}
    loops_own = os.sched_getscheduler(0)
    yield_to_the_loop = sqlite_store._yield_to_the_loop

    def noted() -> None:
        yield_to_the_loop()
        policies[threading.current_thread().name] = os.sched_getscheduler(0)

    monkeypatch.setattr(sqlite_store, "_yield_to_the_loop", noted)
    store = SqliteStore(path, TTL, None, clock)
    await store.put(record("resp_1"))
    await store.close()  # once both threads have ended
    batch = os.SCHED_BATCH
    assert policies == {"diglot-sqlite-write": batch, "diglot-sqlite-checkpoint": batch}
    assert os.sched_getscheduler(0) == loops_own


async def test_a_failed_transaction_fails_its_own_puts_only(store: SqliteStore, path: Path) -> None:
    await store.put(record("resp_before"))
    with write_lock(path) as lock:
        lock.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.id = 'resp_bad' "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
        )
        lock.execute("COMMIT")
        lock.execute("BEGIN IMMEDIATE")
        puts = [store.put(record(rid)) for rid in ("resp_a", "resp_bad", "resp_b")]
        results = await queued_then_released(lock, puts, [])
    assert [type(result) for result in results] == [StoreUnavailable] * 3
    assert all("simulated disk failure" in str(result) for result in results)
    assert [stored_body(path, rid) for rid in ("resp_a", "resp_bad", "resp_b")] == [None] * 3
    await store.put(record("resp_after"))
    assert stored_body(path, "resp_after") == b"body of resp_after"
    assert stored_body(path, "resp_before") == b"body of resp_before"


async def test_closing_lets_the_puts_in_flight_finish(store: SqliteStore, path: Path) -> None:
    await store.put(record("resp_first"))
    rids = [f"resp_{n}" for n in range(8)]
    with write_lock(path) as lock:
        writes: list[Awaitable[object]] = [store.put(record(rid)) for rid in rids]
        results = await queued_then_released(lock, [*writes, store.close()], [])
    assert results == [None] * 9
    assert [stored_body(path, rid) for rid in rids] == [f"body of {rid}".encode() for rid in rids]
    with pytest.raises(StoreUnavailable):
        await store.put(record("resp_late"))


async def test_the_budget_evicts_the_oldest_with_their_items(path: Path, clock: FakeClock) -> None:
    size = record("resp_00", items=("msg_00", "fc_00")).size
    store = SqliteStore(path, TTL, 3 * size, clock)
    try:
        for n in range(10):
            await store.put(record(f"resp_{n:02d}", items=(f"msg_{n:02d}", f"fc_{n:02d}")))
        assert await store.used_bytes() == 3 * size
        assert await store.get("t1", "resp_06") is None
        found = await store.locate("t1", ["msg_06", "msg_07", "fc_09"])
        assert {key: value.id for key, value in found.items()} == {
            "msg_07": "resp_07",
            "fc_09": "resp_09",
        }
    finally:
        await store.close()
    assert count(path, "records") == 3
    assert count(path, "record_items") == 6


async def test_the_puts_of_one_transaction_all_stay_and_the_next_evicts_them_oldest_first(
    path: Path, clock: FakeClock
) -> None:
    size = record("resp_a").size
    store = SqliteStore(path, TTL, 2 * size, clock)
    try:
        await store.put(record("resp_first"))
        with write_lock(path) as lock:
            puts = [store.put(record(rid)) for rid in ("resp_a", "resp_b", "resp_c")]
            assert await queued_then_released(lock, puts, []) == [None] * 3
        assert [await store.get("t1", rid) is not None for rid in ("resp_a", "resp_b")] == [
            True,
            True,
        ]
        await store.put(record("resp_d"))
        kept = [rid for rid in ("resp_a", "resp_b", "resp_c", "resp_d") if stored_body(path, rid)]
        assert kept == ["resp_c", "resp_d"]
    finally:
        await store.close()


async def test_the_file_stays_near_its_budget(path: Path, clock: FakeClock) -> None:
    budget = 1 << 20
    store = SqliteStore(path, TTL, budget, clock)
    try:
        for round_ in range(40):
            await asyncio.gather(
                *(
                    store.put(record(f"resp_{round_}_{n}", b"x" * 4000, (f"msg_{round_}_{n}",)))
                    for n in range(50)
                )
            )
        assert await store.used_bytes() <= budget
    finally:
        await store.close()
    assert path.stat().st_size < 2 * budget  # 8 MB went through it


async def test_the_wal_is_started_over_while_writes_go_on(
    path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 2 MiB: the bursts below outrun the checkpointer, which finds the WAL past its mark
    # several MiB late, and this bound is set for that mark.
    monkeypatch.setattr("diglot.proxy.store.sqlite._WAL_START_OVER", 1024)
    store = SqliteStore(path, TTL, None, clock)
    wal = path.with_name(path.name + "-wal")
    largest = 0
    try:
        for round_ in range(120):
            await asyncio.gather(
                *(store.put(record(f"resp_{round_}_{n}", b"x" * 8000)) for n in range(50))
            )
            largest = max(largest, wal.stat().st_size)
    finally:
        await store.close()
    # 48 MB went through it; left to the writer, the WAL would reach 32 MB before a copy.
    assert largest < 24 << 20


async def test_a_large_expiry_goes_in_several_transactions(path: Path, clock: FakeClock) -> None:
    store = SqliteStore(path, 60, None, clock)
    try:
        await asyncio.gather(*(store.put(record(f"resp_{n}")) for n in range(2500)))
        await store.put(Record("resp_fresh", "t1", None, START + 61, b"fresh"))
        clock.now += 61
        before = store.commits
        assert await store.expire() == 2500
        assert store.commits - before == 3
        assert await store.get("t1", "resp_fresh") is not None
    finally:
        await store.close()


async def test_a_read_first_makes_the_file_owner_only(path: Path, clock: FakeClock) -> None:
    store = SqliteStore(path, TTL, None, clock)
    try:
        assert await store.get("t1", "resp_a") is None
    finally:
        await store.close()
    assert path.stat().st_mode & 0o077 == 0


_FIRST_LAYOUT = """
CREATE TABLE responses (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, previous_id TEXT, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL
);
CREATE INDEX responses_by_expiry ON responses (expires_at);
CREATE INDEX responses_by_age ON responses (created_at);
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE
);
CREATE INDEX items_by_response ON items (response_id);
CREATE TABLE budget (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER);
INSERT INTO budget VALUES (1, 0);
CREATE TRIGGER count_in AFTER INSERT ON responses
    BEGIN UPDATE budget SET bytes = bytes + NEW.size; END;
CREATE TRIGGER count_out AFTER DELETE ON responses
    BEGIN UPDATE budget SET bytes = bytes - OLD.size; END;
INSERT INTO responses VALUES
    ('resp_b', 't1', 'resp_a', 1700000001.0, 1800000000.0, 300, X'62'),
    ('resp_a', 't1', NULL, 1700000000.0, 1800000000.0, 200, X'61');
INSERT INTO items VALUES ('msg_a', 'resp_a'), ('msg_b', 'resp_b'), ('fc_b', 'resp_b');
"""


async def test_a_file_of_the_first_layout_is_carried_over(path: Path, clock: FakeClock) -> None:
    db = sqlite3.connect(path)
    db.executescript(_FIRST_LAYOUT)
    db.close()
    store = SqliteStore(path, TTL, 400, clock)
    try:
        chain = await store.chain("t1", "resp_b")
        assert chain == [
            Record("resp_a", "t1", None, 1700000000.0, b"a"),
            Record("resp_b", "t1", "resp_a", 1700000001.0, b"b"),
        ]
        found = await store.locate("t1", ["msg_a", "fc_b"])
        assert {key: value.id for key, value in found.items()} == {
            "msg_a": "resp_a",
            "fc_b": "resp_b",
        }
        assert await store.used_bytes() == 500
        await store.put(Record("resp_c", "t1", "resp_b", 1700000002.0, b"c"))
        assert await store.get("t1", "resp_a") is None  # the oldest went first
        assert await store.get("t1", "resp_b") is not None
    finally:
        await store.close()
    db = sqlite3.connect(path)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {
        "records",
        "record_items",
        "used_bytes",
        "conversations",
        "conversation_items",
        "runs",
        "event_logs",
        "events",
    }


# The layout before conversations (`PRAGMA user_version = 1`), holding one response.
_RESPONSES_ONLY_LAYOUT = """
CREATE TABLE records (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, previous_id TEXT,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL
);
CREATE INDEX records_by_expiry ON records (expires_at);
CREATE TABLE record_items (
    seq INTEGER NOT NULL, item_id TEXT NOT NULL, PRIMARY KEY (seq, item_id)
) WITHOUT ROWID;
CREATE INDEX record_items_by_id ON record_items (item_id);
CREATE TABLE used_bytes (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER NOT NULL);
INSERT INTO used_bytes VALUES (1, 0);
CREATE TRIGGER records_in AFTER INSERT ON records
    BEGIN UPDATE used_bytes SET bytes = bytes + NEW.size; END;
CREATE TRIGGER records_out AFTER DELETE ON records BEGIN
    UPDATE used_bytes SET bytes = bytes - OLD.size;
    DELETE FROM record_items WHERE seq = OLD.seq;
END;
INSERT INTO records VALUES (1, 'resp_a', 't1', NULL, 1700000000.0, 1800000000.0, 200, X'61');
INSERT INTO record_items VALUES (1, 'msg_a');
PRAGMA user_version = 1;
"""


async def test_a_file_without_conversations_gains_them_and_keeps_its_responses(
    path: Path, clock: FakeClock
) -> None:
    db = sqlite3.connect(path)
    db.executescript(_RESPONSES_ONLY_LAYOUT)
    db.close()
    store = SqliteStore(path, TTL, None, clock)
    try:
        assert await store.get("t1", "resp_a") == Record("resp_a", "t1", None, START, b"a")
        assert (await store.locate("t1", ["msg_a"]))["msg_a"].id == "resp_a"
        assert await store.used_bytes() == 200
        await store.put_conversation(Conversation("conv_a", "t1", START, b"{}"), [])
        assert await store.get_conversation("t1", "conv_a") is not None
        await store.claim_run("resp_a", "t1", "diglot_1", lease=10)
        await store.keep_events("resp_a", START, [(0, b"frame")], cap=100)
        assert await store.kept_events("resp_a", -1) == KeptEvents([b"frame"], 0, 1)
    finally:
        await store.close()
    db = sqlite3.connect(path)
    (layout,) = db.execute("PRAGMA user_version").fetchone()
    db.close()
    assert layout == 3


async def test_conversations_survive_a_restart(path: Path, clock: FakeClock) -> None:
    first = SqliteStore(path, TTL, None, clock)
    try:
        talk = Conversation("conv_a", "t1", START, b'{"topic":"x"}')
        await first.put_conversation(talk, [StoredItem("msg_1", b"one")])
        await first.add_conversation_items("t1", "conv_a", [StoredItem("msg_2", b"two")])
    finally:
        await first.close()
    second = SqliteStore(path, TTL, None, clock)
    try:
        assert await second.get_conversation("t1", "conv_a") == talk
        found = await second.conversation_items("t1", "conv_a", order="desc")
        assert found == ItemSlice([StoredItem("msg_2", b"two"), StoredItem("msg_1", b"one")], False)
    finally:
        await second.close()


async def test_a_taken_item_id_fails_its_own_write_only(store: SqliteStore, path: Path) -> None:
    await store.put_conversation(
        Conversation("conv_a", "t1", START, b"{}"), [StoredItem("msg_1", b"one")]
    )
    before = store.commits
    with write_lock(path) as lock:
        writes = [
            store.put(record("resp_a")),
            store.add_conversation_items("t1", "conv_a", [StoredItem("msg_1", b"again")]),
            store.add_conversation_items("t1", "conv_a", [StoredItem("msg_2", b"two")]),
            store.put(record("resp_b")),
        ]
        results = await queued_then_released(lock, writes, [])
    assert results[0] is None and results[2] is True and results[3] is None
    assert isinstance(results[1], ItemIdTaken) and results[1].item_id == "msg_1"
    assert store.commits - before == 1
    assert [stored_body(path, rid) for rid in ("resp_a", "resp_b")] == [
        b"body of resp_a",
        b"body of resp_b",
    ]
    found = await store.conversation_items("t1", "conv_a")
    assert found == ItemSlice([StoredItem("msg_1", b"one"), StoredItem("msg_2", b"two")], False)
