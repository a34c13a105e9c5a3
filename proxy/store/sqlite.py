"""`sqlite:///path`: the default store, one file in WAL mode, written off the event loop.

One writer thread commits every write that waits for it in one transaction (group commit), and
`put` returns only once its transaction committed, so a response acknowledged to a client
survives the proxy being killed. `synchronous=NORMAL` keeps that promise for process crashes;
only a power loss may take the last commits with it. Reads run on a second connection, which
WAL lets read while the writer writes; a third thread copies the WAL back into the database
file, so that no write waits for that copy and its fsyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from diglot.proxy.observability import get_logger
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
)

T = TypeVar("T")
log = get_logger()

# PRAGMA user_version once the tables below are in place (2: conversations; 3: background runs)
_LAYOUT = 3
_MOST_PER_COMMIT = 256  # writes one transaction takes at most
_EXPIRE_CHUNK = 1000  # rows one expiry transaction removes at most: writes wait meanwhile
# Seconds between two copies of the WAL into the database file: the longer the WAL grows
# between them, the longer the writer's share of the copy takes.
_CHECKPOINT_PAUSE = 0.03
# Frames (8 MiB of 2 KiB pages) the WAL may hold before the writer copies its last ones, so that
# it starts over: that copy and the start over fsync three times on the writer's thread, and the
# writes waiting wait for them. One write per transaction (one request at a time) adds 7-10
# frames: at 2 MiB, every 150th request waited for them, too many for a p99 when fsyncs are slow.
_WAL_START_OVER = 4096
_PRAGMAS = (
    # Before anything is written (later, it changes nothing): a small page keeps the pages each
    # write dirties at random places of the id indexes cheap, and wastes less space per record.
    "PRAGMA page_size = 2048",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA recursive_triggers = ON",  # REPLACE counts the replaced row out
    # The checkpointer thread copies the WAL; the writer copies all of it only if that thread
    # falls far behind.
    "PRAGMA wal_autocheckpoint = 16384",
    "PRAGMA journal_size_limit = 67108864",  # a burst's WAL is cut back to 64 MB once copied
)
# `seq` is the storage order the budget evicts by; a record's item ids sit in its own range of
# `record_items`, so eviction removes them from the start of that table too.
_TABLES = (
    """CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        previous_id TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        size INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at)",
    """CREATE TABLE IF NOT EXISTS record_items (
        seq INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        PRIMARY KEY (seq, item_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS record_items_by_id ON record_items (item_id)",
    """CREATE TABLE IF NOT EXISTS used_bytes (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        bytes INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO used_bytes VALUES (1, 0)",
    """CREATE TRIGGER IF NOT EXISTS records_in AFTER INSERT ON records
        BEGIN UPDATE used_bytes SET bytes = bytes + NEW.size; END""",
    """CREATE TRIGGER IF NOT EXISTS records_out AFTER DELETE ON records BEGIN
        UPDATE used_bytes SET bytes = bytes - OLD.size;
        DELETE FROM record_items WHERE seq = OLD.seq;
    END""",
    # Conversations: kept until `expires_at` (pushed back by every change), apart from the
    # budget; an item's `seq` is its place in its conversation.
    """CREATE TABLE IF NOT EXISTS conversations (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        metadata BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_by_expiry ON conversations (expires_at)",
    """CREATE TABLE IF NOT EXISTS conversation_items (
        seq INTEGER PRIMARY KEY,
        conversation INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS conversation_items_by_id
        ON conversation_items (conversation, item_id)""",
    """CREATE INDEX IF NOT EXISTS conversation_items_in_order
        ON conversation_items (conversation, seq)""",
    """CREATE TRIGGER IF NOT EXISTS conversations_out AFTER DELETE ON conversations
        BEGIN DELETE FROM conversation_items WHERE conversation = OLD.seq; END""",
    # Background responses: a lease per running one, and the events each streamed. A record
    # stored again (REPLACE) fires `records_out`, so these are removed by the statements that
    # forget a response, never by a trigger on `records`.
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        owner TEXT NOT NULL,
        until REAL NOT NULL,
        cancel INTEGER NOT NULL DEFAULT 0,
        progress BLOB
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (until)",
    """CREATE TABLE IF NOT EXISTS event_logs (
        id TEXT PRIMARY KEY,
        first INTEGER NOT NULL,
        next INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS event_logs_by_expiry ON event_logs (expires_at)",
    """CREATE TABLE IF NOT EXISTS events (
        log TEXT NOT NULL,
        seq INTEGER NOT NULL,
        frame BLOB NOT NULL,
        PRIMARY KEY (log, seq)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS event_logs_out AFTER DELETE ON event_logs
        BEGIN DELETE FROM events WHERE log = OLD.id; END""",
)
# The first layout (`responses`, `items`, `budget`), carried over oldest first.
_FROM_FIRST_LAYOUT = (
    """INSERT OR REPLACE INTO records
        (id, tenant, previous_id, created_at, expires_at, size, body)
        SELECT id, tenant, previous_id, created_at, expires_at, size, body
        FROM responses ORDER BY created_at""",
    """INSERT OR IGNORE INTO record_items
        SELECT records.seq, items.item_id
        FROM items JOIN records ON records.id = items.response_id""",
    "DROP TABLE items",
    "DROP TABLE responses",
    "DROP TABLE budget",
)
_INSERT = (
    "INSERT INTO records (id, tenant, previous_id, created_at, expires_at, size, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_REPLACE = _INSERT.replace("INSERT", "INSERT OR REPLACE", 1)
# The chain in one statement: the response, then each previous one, of the same tenant, alive.
_CHAIN = """
WITH RECURSIVE chain (id, previous_id, created_at, body, depth) AS (
    SELECT id, previous_id, created_at, body, 0 FROM records
        WHERE id = :id AND tenant = :tenant AND expires_at > :now
    UNION ALL
    SELECT r.id, r.previous_id, r.created_at, r.body, chain.depth + 1
        FROM records AS r JOIN chain ON r.id = chain.previous_id
        WHERE r.tenant = :tenant AND r.expires_at > :now AND chain.depth < :limit
)
SELECT id, previous_id, created_at, body FROM chain ORDER BY depth DESC
"""
_ROW = "SELECT id, previous_id, created_at, body FROM records"
_ALIVE = "tenant = ? AND expires_at > ?"
_EXPIRE = "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE expires_at <= ? LIMIT ?)"
_EXPIRE_CONVERSATIONS = (
    "DELETE FROM conversations WHERE seq IN "
    "(SELECT seq FROM conversations WHERE expires_at <= ? LIMIT ?)"
)
_EXPIRE_EVENTS = (
    "DELETE FROM event_logs WHERE id IN (SELECT id FROM event_logs WHERE expires_at <= ? LIMIT ?)"
)
_CONVERSATION = "SELECT seq, id, created_at, metadata FROM conversations WHERE id = ? AND " + _ALIVE
_ADD_ITEM = "INSERT INTO conversation_items (conversation, item_id, body) VALUES (?, ?, ?)"
_ITEM = "SELECT item_id, body FROM conversation_items WHERE conversation = ? AND item_id = ?"
_PLACE = "SELECT seq FROM conversation_items WHERE conversation = ? AND item_id = ?"
_ITEMS = {
    "asc": "SELECT item_id, body FROM conversation_items WHERE conversation = ? AND seq > ? "
    "ORDER BY seq LIMIT ?",
    "desc": "SELECT item_id, body FROM conversation_items WHERE conversation = ? AND seq < ? "
    "ORDER BY seq DESC LIMIT ?",
}
_SEQ_BOUND = {"asc": -1, "desc": 2**63 - 1}  # a place before the first, or after the last


class SqliteStore(Store):
    """Writes go to one writer thread, reads to one reader thread: never on the event loop."""

    def __init__(self, path: Path, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        self.path = path
        self._writer = _Writer(path, max_bytes)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="diglot-sqlite-read")
        self._read_db: sqlite3.Connection | None = None
        self._laid_out = False  # the writer has made the file and its tables
        self._closed = False

    @property
    def commits(self) -> int:
        """Write transactions committed so far: fewer than the writes when they were grouped."""
        return self._writer.commits

    async def put(self, record: Record) -> None:
        row = (
            record.id,
            record.tenant,
            record.previous_id,
            record.created_at,
            self.expires_at(record),
            record.size,
            record.body,
        )
        await self._write(functools.partial(_insert, row, record.item_ids), put=True)

    async def get(self, tenant: str, response_id: str) -> Record | None:
        query, params = f"{_ROW} WHERE id = ? AND {_ALIVE}", (response_id, tenant, self.clock())
        rows = await self._read(lambda db: db.execute(query, params).fetchall())
        return _record(tenant, rows[0]) if rows else None

    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        params = {"id": response_id, "tenant": tenant, "now": self.clock(), "limit": MAX_CHAIN}
        rows = await self._read(lambda db: db.execute(_CHAIN, params).fetchall())
        return [_record(tenant, row) for row in rows] or None

    async def delete(self, tenant: str, response_id: str) -> bool:
        params = (response_id, tenant, self.clock())
        deleted: bool = await self._write(functools.partial(_delete, params))
        return deleted

    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        query = (
            "SELECT items.item_id, r.id, r.previous_id, r.created_at, r.body "
            "FROM record_items AS items JOIN records AS r ON r.seq = items.seq "
            f"WHERE items.item_id IN ({marks}) AND r.tenant = ? AND r.expires_at > ? "
            "ORDER BY r.seq"  # an item id stored twice names its latest response
        )
        params = (*item_ids, tenant, self.clock())
        rows = await self._read(lambda db: db.execute(query, params).fetchall())
        return {row[0]: _record(tenant, row[1:]) for row in rows}

    async def put_conversation(self, conversation: Conversation, items: list[StoredItem]) -> None:
        taken = repeated_id(items)
        if taken is not None:
            raise ItemIdTaken(taken)
        row = (
            conversation.id,
            conversation.tenant,
            conversation.created_at,
            self.conversation_expires_at(),
            conversation.metadata,
        )
        await self._write(functools.partial(_create_conversation, row, items))

    async def get_conversation(self, tenant: str, conversation_id: str) -> Conversation | None:
        params = (conversation_id, tenant, self.clock())
        rows = await self._read(lambda db: db.execute(_CONVERSATION, params).fetchall())
        return _conversation(tenant, rows[0]) if rows else None

    async def set_conversation_metadata(
        self, tenant: str, conversation_id: str, metadata: bytes
    ) -> Conversation | None:
        find = (conversation_id, tenant, self.clock())
        write = functools.partial(_set_metadata, find, metadata, self.conversation_expires_at())
        row: tuple[int, str, float, bytes] | None = await self._write(write)
        return None if row is None else _conversation(tenant, row)

    async def delete_conversation(self, tenant: str, conversation_id: str) -> bool:
        query = f"DELETE FROM conversations WHERE id = ? AND {_ALIVE}"
        params = (conversation_id, tenant, self.clock())
        deleted: int = await self._write(lambda db: db.execute(query, params).rowcount)
        return bool(deleted)

    async def add_conversation_items(
        self, tenant: str, conversation_id: str, items: list[StoredItem]
    ) -> bool:
        taken = repeated_id(items)
        if taken is not None:
            raise ItemIdTaken(taken)
        find = (conversation_id, tenant, self.clock())
        write = functools.partial(_add_items, find, items, self.conversation_expires_at())
        found, taken = await self._write(write)
        if taken is not None:
            raise ItemIdTaken(taken)
        return bool(found)

    async def conversation_items(
        self,
        tenant: str,
        conversation_id: str,
        *,
        order: Order = "asc",
        after: str | None = None,
        limit: int | None = None,
    ) -> ItemSlice | None:
        find = (conversation_id, tenant, self.clock())
        return await self._read(functools.partial(_items, find, order, after, limit))

    async def get_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> StoredItem | None:
        find = (conversation_id, tenant, self.clock())
        return await self._read(functools.partial(_item, find, item_id))

    async def delete_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        find = (conversation_id, tenant, self.clock())
        write = functools.partial(_delete_item, find, item_id, self.conversation_expires_at())
        row: tuple[int, str, float, bytes] | None = await self._write(write)
        return None if row is None else _conversation(tenant, row)

    async def claim_run(self, response_id: str, tenant: str, owner: str, lease: float) -> None:
        row = (response_id, tenant, owner, self.clock() + lease)
        query = "INSERT OR REPLACE INTO runs (id, tenant, owner, until) VALUES (?, ?, ?, ?)"
        await self._write(lambda db: db.execute(query, row))

    async def renew_runs(
        self, owner: str, progress: Mapping[str, bytes | None], lease: float
    ) -> Renewal:
        if not progress:
            return Renewal()
        work = functools.partial(_renew, owner, dict(progress), self.clock() + lease)
        renewal: Renewal = await self._write(work)
        return renewal

    async def end_run(self, response_id: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM runs WHERE id = ?", (response_id,)))

    async def cancel_run(self, tenant: str, response_id: str) -> bool:
        query = "UPDATE runs SET cancel = 1 WHERE id = ? AND tenant = ?"
        asked: int = await self._write(lambda db: db.execute(query, (response_id, tenant)).rowcount)
        return bool(asked)

    async def run_progress(self, tenant: str, response_id: str) -> bytes | None:
        query = "SELECT progress FROM runs WHERE id = ? AND tenant = ?"
        rows = await self._read(lambda db: db.execute(query, (response_id, tenant)).fetchall())
        return rows[0][0] if rows else None

    async def lapsed_runs(self, owner: str, lease: float) -> list[LapsedRun]:
        """Looked for on the reader first: the sweep runs every second, and rarely finds any."""
        now = self.clock()
        query = "SELECT 1 FROM runs WHERE until <= ? LIMIT 1"
        if not await self._read(lambda db: db.execute(query, (now,)).fetchall()):
            return []
        taken = functools.partial(_lapsed, now, owner, now + lease)
        lapsed: list[LapsedRun] = await self._write(taken)
        return lapsed

    async def keep_events(
        self, response_id: str, created_at: float, frames: Sequence[tuple[int, bytes]], cap: int
    ) -> None:
        if not frames:
            return
        log = (response_id, created_at + self.ttl, cap)
        await self._write(functools.partial(_keep_events, log, list(frames)))

    async def kept_events(self, response_id: str, after: int) -> KeptEvents:
        find = (response_id, self.clock())
        return await self._read(functools.partial(_kept_events, find, after))

    async def expire(self) -> int:
        """In chunks, so that the writes waiting meanwhile are not held up by a large sweep;
        kept events go with their responses, uncounted."""
        now = self.clock()
        removed = 0
        while True:
            gone: tuple[int, int, int] = await self._write(functools.partial(_expire_some, now))
            removed += gone[0] + gone[1]
            if max(gone) < _EXPIRE_CHUNK:
                return removed

    async def used_bytes(self) -> int:
        rows = await self._read(lambda db: db.execute("SELECT bytes FROM used_bytes").fetchall())
        return int(rows[0][0])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=False)

    async def _write(self, work: Callable[[sqlite3.Connection], T], put: bool = False) -> T:
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        result: T = await self._writer.submit(work, put)
        self._laid_out = True
        return result

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._laid_out:  # the reader never makes the file: the writer does, owner-only
            await self._write(_nothing)
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """In the reader thread: (re)open the reading connection when needed, run, map failures."""
        try:
            if self._read_db is None:
                self._read_db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
                self._read_db.execute("PRAGMA query_only = ON")
            return work(self._read_db)
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(self.path, exc) from exc

    def _close_reader(self) -> None:
        if self._read_db is not None:
            self._read_db.close()
            self._read_db = None


@dataclass(slots=True)
class _Job:
    """A write waiting for the writer thread, and the future of the task waiting for it."""

    work: Callable[[sqlite3.Connection], Any]  # `_stop`: close the connection, end the thread
    put: bool  # its result is the row's `seq`; the budget is kept after it
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class _Writer:
    """One thread and connection; each transaction takes every write waiting when it begins."""

    def __init__(self, path: Path, max_bytes: int | None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.commits = 0
        # Writes, and None: the checkpointer asks for the WAL's last frames to be copied.
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._checkpointer = _Checkpointer(path, finish=lambda: self._queue.put(None))

    def submit(self, work: Callable[[sqlite3.Connection], Any], put: bool) -> asyncio.Future[Any]:
        """The write's future: its result once committed, or StoreUnavailable."""
        if self._thread is None:
            # A daemon: an unclosed store must not keep the process alive; what a write
            # acknowledged is already committed.
            self._thread = threading.Thread(target=self._serve, name="diglot-sqlite-write")
            self._thread.daemon = True
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(work, put, loop, future))
        return future

    async def stop(self) -> None:
        """After the writes already waiting: close the connection and end the thread."""
        if self._thread is not None:
            await self.submit(_stop, put=False)

    def _serve(self) -> None:
        """The thread: a transaction for whatever waits, again and again, until told to stop."""
        held: list[_Job | None] = []  # what ended the last transaction's drain, handled next
        _yield_to_the_loop()
        while True:
            item = held.pop() if held else self._queue.get()
            if item is None:
                self._finish_checkpoint()
            elif item.work is _stop:
                break
            else:
                held = self._commit(item)
        self._checkpointer.stop()
        self._close()
        _settle(item, None, None)

    def _commit(self, first: _Job) -> list[_Job | None]:
        """One transaction for this write and those waiting once it began.

        Returns what stopped the drain, if not a write (a stop, a checkpoint to finish)."""
        jobs, held = [first], []
        try:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            held = self._drain(jobs)
            results = [job.work(db) for job in jobs]
            kept = [seq for job, seq in zip(jobs, results, strict=True) if job.put]
            if self.max_bytes is not None and kept:
                _evict(db, self.max_bytes, min(kept))
            db.execute("COMMIT")
        except Exception as exc:  # every waiting task hears of it: none may hang
            self._rollback()
            failure = _failure(self.path, exc)
            _settle_all([(job, None, failure) for job in jobs])
        else:
            self.commits += 1
            _settle_all([(job, result, None) for job, result in zip(jobs, results, strict=True)])
            self._checkpointer.nudge()
        return held

    def _drain(self, jobs: list[_Job]) -> list[_Job | None]:
        """Add the writes waiting now to `jobs`, up to what is not a write (returned)."""
        while len(jobs) < _MOST_PER_COMMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return []
            if item is None or item.work is _stop:
                return [item]
            jobs.append(item)
        return []

    def _finish_checkpoint(self) -> None:
        """Copy the WAL's last frames between two transactions: only a checkpoint that copies
        all of it lets the next transaction start the WAL over, and the checkpointer cannot
        while commits keep coming; the frames before were copied off this thread."""
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("store_checkpoint_failed", path=str(self.path), error=str(exc))

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = _connect(self.path)
        return self._db

    def _rollback(self) -> None:
        """Undo a failed transaction; a connection that cannot is dropped and opened anew."""
        if self._db is None or not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _Checkpointer:
    """A thread and connection copying the WAL into the database file soon after commits, so
    that no write waits for most of that copy and its fsyncs."""

    def __init__(self, path: Path, finish: Callable[[], None]) -> None:
        self.path = path
        self._finish = finish  # has the writer copy what was committed meanwhile
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()

    def nudge(self) -> None:
        """From the writer thread: something was committed."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="diglot-sqlite-checkpoint")
            self._thread.daemon = True
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """From the writer thread, as it stops: end the thread once its copy is done."""
        if self._thread is not None:
            self._halt.set()
            self._wake.set()
            self._thread.join()

    def _serve(self) -> None:
        db: sqlite3.Connection | None = None
        _yield_to_the_loop()
        while True:
            self._wake.wait()
            if self._halt.is_set():
                break
            self._wake.clear()
            try:
                db = db or sqlite3.connect(self.path, isolation_level=None, timeout=10)
                _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # the writer copies the WAL itself if this goes on
                log.warning("store_checkpoint_failed", path=str(self.path), error=str(exc))
                if db is not None:
                    db.close()
                    db = None
            else:
                if frames >= _WAL_START_OVER:
                    self._finish()
            self._halt.wait(_CHECKPOINT_PAUSE)  # the commits meanwhile are copied together
        if db is not None:
            db.close()


def _connect(path: Path) -> sqlite3.Connection:
    """The writer's connection: the file made owner-only, its tables laid out, carried over."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():  # prompts live here: owner only (WAL files follow the mode)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        for pragma in _PRAGMAS:
            db.execute(pragma)
        if _layout(db) < _LAYOUT:
            _lay_out(db)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _layout(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _lay_out(db: sqlite3.Connection) -> None:
    """Make the tables, and carry the first layout's responses over when the file has them."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if _layout(db) < _LAYOUT:  # another process may have done it meanwhile
            first = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'budget'").fetchone()
            for statement in _TABLES + (_FROM_FIRST_LAYOUT if first else ()):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {_LAYOUT}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _yield_to_the_loop() -> None:
    """The calling thread stops preempting the event loop's thread as it wakes (Linux's
    SCHED_BATCH): on a busy core a woken writer waits for the loop to pause, and the writes
    submitted meanwhile join its transaction (about 16 per commit instead of 3 at 32 requests
    at a time on one core)."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, batch, os.sched_param(0))


def _insert(row: tuple[object, ...], item_ids: tuple[str, ...], db: sqlite3.Connection) -> int:
    """The record and its item ids; its `seq`.

    A plain INSERT first: REPLACE costs more than a record stored anew, and only a background
    response is stored again (its id taken: the statement alone fails, the transaction goes on).
    """
    try:
        seq = db.execute(_INSERT, row).lastrowid
    except sqlite3.IntegrityError:
        seq = db.execute(_REPLACE, row).lastrowid
    assert seq is not None  # an INSERT always has one
    db.executemany("INSERT OR IGNORE INTO record_items VALUES (?, ?)", [(seq, i) for i in item_ids])
    return seq


def _create_conversation(
    row: tuple[object, ...], items: list[StoredItem], db: sqlite3.Connection
) -> None:
    """A new conversation and its first items (their ids were checked to differ)."""
    seq = db.execute(
        "INSERT OR REPLACE INTO conversations (id, tenant, created_at, expires_at, metadata) "
        "VALUES (?, ?, ?, ?, ?)",
        row,
    ).lastrowid
    db.executemany(_ADD_ITEM, [(seq, item.id, item.body) for item in items])


def _set_metadata(
    find: tuple[str, str, float], metadata: bytes, expires_at: float, db: sqlite3.Connection
) -> tuple[int, str, float, bytes] | None:
    """The conversation's row with its new metadata, or None when there is no such one."""
    row: tuple[int, str, float, bytes] | None = db.execute(_CONVERSATION, find).fetchone()
    if row is None:
        return None
    db.execute(
        "UPDATE conversations SET metadata = ?, expires_at = ? WHERE seq = ?",
        (metadata, expires_at, row[0]),
    )
    return (*row[:3], metadata)


def _add_items(
    find: tuple[str, str, float],
    items: list[StoredItem],
    expires_at: float,
    db: sqlite3.Connection,
) -> tuple[bool, str | None]:
    """Whether the conversation was found, and the id that stopped the items going in, if any.

    Checked before writing: a failed statement would fail every write of the transaction.
    """
    row = db.execute(_CONVERSATION, find).fetchone()
    if row is None:
        return False, None
    seq = row[0]
    held = (item.id for item in items if db.execute(_PLACE, (seq, item.id)).fetchone())
    taken = next(held, None)
    if taken is not None:
        return True, taken
    db.executemany(_ADD_ITEM, [(seq, item.id, item.body) for item in items])
    db.execute("UPDATE conversations SET expires_at = ? WHERE seq = ?", (expires_at, seq))
    return True, None


def _delete_item(
    find: tuple[str, str, float], item_id: str, expires_at: float, db: sqlite3.Connection
) -> tuple[int, str, float, bytes] | None:
    """The conversation's row once its item is gone, or None when either was missing."""
    row: tuple[int, str, float, bytes] | None = db.execute(_CONVERSATION, find).fetchone()
    if row is None:
        return None
    deleted = db.execute(
        "DELETE FROM conversation_items WHERE conversation = ? AND item_id = ?", (row[0], item_id)
    ).rowcount
    if not deleted:
        return None
    db.execute("UPDATE conversations SET expires_at = ? WHERE seq = ?", (expires_at, row[0]))
    return row


def _items(
    find: tuple[str, str, float],
    order: Order,
    after: str | None,
    limit: int | None,
    db: sqlite3.Connection,
) -> ItemSlice | None:
    """In the reader thread: the slice of the conversation's items asked for."""
    row = db.execute(_CONVERSATION, find).fetchone()
    if row is None:
        return None
    bound = _SEQ_BOUND[order]
    if after is not None:
        place = db.execute(_PLACE, (row[0], after)).fetchone()
        if place is None:
            return None
        bound = place[0]
    wanted = -1 if limit is None else limit + 1  # one more tells whether there are more
    rows = db.execute(_ITEMS[order], (row[0], bound, wanted)).fetchall()
    items = [StoredItem(item_id, body) for item_id, body in rows]
    if limit is None or len(items) <= limit:
        return ItemSlice(items, False)
    return ItemSlice(items[:limit], True)


def _item(find: tuple[str, str, float], item_id: str, db: sqlite3.Connection) -> StoredItem | None:
    """In the reader thread: one item of a live conversation."""
    row = db.execute(_CONVERSATION, find).fetchone()
    found = None if row is None else db.execute(_ITEM, (row[0], item_id)).fetchone()
    return None if found is None else StoredItem(found[0], found[1])


def _expire_some(now: float, db: sqlite3.Connection) -> tuple[int, int, int]:
    """Up to a chunk each of expired responses, conversations and kept events: how many went."""
    responses = db.execute(_EXPIRE, (now, _EXPIRE_CHUNK)).rowcount
    conversations = db.execute(_EXPIRE_CONVERSATIONS, (now, _EXPIRE_CHUNK)).rowcount
    events = db.execute(_EXPIRE_EVENTS, (now, _EXPIRE_CHUNK)).rowcount
    return responses, conversations, events


def _delete(find: tuple[str, str, float], db: sqlite3.Connection) -> bool:
    """The live response of this tenant, with its run and kept events; whether there was one."""
    query = f"DELETE FROM records WHERE id = ? AND {_ALIVE}"
    if not db.execute(query, find).rowcount:
        return False
    _forget(db, [find[0]])
    return True


def _forget(db: sqlite3.Connection, response_ids: list[str]) -> None:
    """What responses leave beside their records: their runs and kept events."""
    rows = [(response_id,) for response_id in response_ids]
    db.executemany("DELETE FROM runs WHERE id = ?", rows)
    db.executemany("DELETE FROM event_logs WHERE id = ?", rows)


def _renew(
    owner: str, progress: dict[str, bytes | None], until: float, db: sqlite3.Connection
) -> Renewal:
    """Each run's lease extended where `owner` still holds it; what the leases say."""
    cancel: set[str] = set()
    lost: set[str] = set()
    for response_id, made in progress.items():
        row = db.execute(
            "SELECT cancel FROM runs WHERE id = ? AND owner = ?", (response_id, owner)
        ).fetchone()
        if row is None:
            lost.add(response_id)
            continue
        db.execute(
            "UPDATE runs SET until = ?, progress = coalesce(?, progress) WHERE id = ?",
            (until, made, response_id),
        )
        if row[0]:
            cancel.add(response_id)
    return Renewal(frozenset(cancel), frozenset(lost))


def _lapsed(now: float, owner: str, until: float, db: sqlite3.Connection) -> list[LapsedRun]:
    """The runs whose lease ran out, leased to `owner`: no other diglot takes them too."""
    rows = db.execute("SELECT id, tenant, progress FROM runs WHERE until <= ?", (now,)).fetchall()
    db.execute("UPDATE runs SET owner = ?, until = ? WHERE until <= ?", (owner, until, now))
    return [LapsedRun(response_id, tenant, progress) for response_id, tenant, progress in rows]


def _keep_events(
    log: tuple[str, float, int], frames: list[tuple[int, bytes]], db: sqlite3.Connection
) -> None:
    """Append the frames that follow on from those kept, then drop the oldest beyond the cap."""
    log_id, expires_at, cap = log
    row = db.execute("SELECT first, next, bytes FROM event_logs WHERE id = ?", (log_id,)).fetchone()
    if row is None:
        first = frames[0][0]
        db.execute(
            "INSERT INTO event_logs VALUES (?, ?, ?, 0, ?)", (log_id, first, first, expires_at)
        )
        row = (first, first, 0)
    first, following, size = row
    fresh = [(seq, frame) for seq, frame in frames if seq >= following]
    if not fresh:
        return
    if fresh[0][0] > following:  # one was lost: what is kept cannot be continued
        db.execute("DELETE FROM events WHERE log = ?", (log_id,))
        first, size = fresh[0][0], 0
    db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(log_id, *pair) for pair in fresh])
    size += sum(len(frame) for _, frame in fresh)
    following = fresh[-1][0] + 1
    if size > cap:
        first, size = _trim(db, log_id, following, size, cap)
    db.execute(
        "UPDATE event_logs SET first = ?, next = ?, bytes = ? WHERE id = ?",
        (first, following, size, log_id),
    )


def _trim(
    db: sqlite3.Connection, log_id: str, following: int, size: int, cap: int
) -> tuple[int, int]:
    """The oldest events dropped until the rest fit `cap` (the last always stays)."""
    rows = db.execute(
        "SELECT seq, length(frame) FROM events WHERE log = ? AND seq < ? ORDER BY seq",
        (log_id, following - 1),
    ).fetchall()
    first = following - 1
    for seq, length in rows:
        if size <= cap:
            first = seq
            break
        size -= length
    db.execute("DELETE FROM events WHERE log = ? AND seq < ?", (log_id, first))
    return first, size


def _kept_events(find: tuple[str, float], after: int, db: sqlite3.Connection) -> KeptEvents:
    """In the reader thread: the kept events after `after`, and which are kept."""
    row = db.execute(
        "SELECT first, next FROM event_logs WHERE id = ? AND expires_at > ?", find
    ).fetchone()
    if row is None:
        return KeptEvents([], 0, 0)
    rows = db.execute(
        "SELECT frame FROM events WHERE log = ? AND seq > ? ORDER BY seq", (find[0], after)
    ).fetchall()
    return KeptEvents([frame for (frame,) in rows], row[0], row[1])


def _nothing(db: sqlite3.Connection) -> None:
    """A write that only makes sure the file and its tables exist."""


def _stop(db: sqlite3.Connection) -> None:
    """Never run: tells the writer thread to close its connection and end."""


def _evict(db: sqlite3.Connection, budget: int, first_kept: int) -> None:
    """Oldest records first until the budget holds; those of this transaction always stay."""
    (used,) = db.execute("SELECT bytes FROM used_bytes").fetchone()
    excess = used - budget
    if excess <= 0:
        return
    doomed: list[tuple[int]] = []
    gone: list[str] = []
    rows = db.execute("SELECT seq, size, id FROM records WHERE seq < ? ORDER BY seq", (first_kept,))
    for seq, size, response_id in rows:
        doomed.append((seq,))
        gone.append(response_id)
        excess -= size
        if excess <= 0:
            break
    rows.close()
    db.executemany("DELETE FROM records WHERE seq = ?", doomed)
    _forget(db, gone)


_Outcome = tuple[_Job, object, BaseException | None]


def _settle(job: _Job, result: object, error: BaseException | None) -> None:
    """From the writer thread: resolve the job's future in its event loop."""
    _settle_all([(job, result, error)])


def _settle_all(outcomes: list[_Outcome]) -> None:
    """From the writer thread: resolve a transaction's futures, one wake-up per event loop
    (each wake-up is a write to the loop's self-pipe, and one per job cost a syscall each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, theirs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this any more
            loop.call_soon_threadsafe(_resolve_all, theirs)


def _resolve_all(outcomes: list[_Outcome]) -> None:
    for job, result, error in outcomes:
        future = job.future
        if future.done():  # the waiting task was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _failure(path: Path, exc: Exception) -> Exception:
    """What a failed write raises: StoreUnavailable for the database's own failures."""
    return _unavailable(path, exc) if isinstance(exc, sqlite3.Error | OSError) else exc


def _unavailable(path: Path, exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the sqlite store at {path} failed: {exc}")


def _conversation(tenant: str, row: tuple[int, str, float, bytes]) -> Conversation:
    return Conversation(id=row[1], tenant=tenant, created_at=row[2], metadata=row[3])


def _record(tenant: str, row: tuple[str, str | None, float, bytes]) -> Record:
    return Record(id=row[0], tenant=tenant, previous_id=row[1], created_at=row[2], body=row[3])
