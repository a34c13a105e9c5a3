"""`sqlite:///path`: the default store, one file in WAL mode, written off the event loop.

Every write commits before `put` returns, so a response acknowledged to a client survives the
proxy being killed. `synchronous=NORMAL` keeps that promise for process crashes; only a power
loss may take the last commits with it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from diglot.proxy.store import MAX_CHAIN, Clock, Record, Store, StoreUnavailable

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    previous_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS items_by_response ON items (response_id);
CREATE TABLE IF NOT EXISTS budget (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER);
INSERT OR IGNORE INTO budget VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS count_in AFTER INSERT ON responses
    BEGIN UPDATE budget SET bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS count_out AFTER DELETE ON responses
    BEGIN UPDATE budget SET bytes = bytes - OLD.size; END;
"""
# The chain in one statement: the response, then each previous one, of the same tenant, alive.
_CHAIN = """
WITH RECURSIVE chain (id, previous_id, created_at, body, depth) AS (
    SELECT id, previous_id, created_at, body, 0 FROM responses
        WHERE id = :id AND tenant = :tenant AND expires_at > :now
    UNION ALL
    SELECT r.id, r.previous_id, r.created_at, r.body, chain.depth + 1
        FROM responses AS r JOIN chain ON r.id = chain.previous_id
        WHERE r.tenant = :tenant AND r.expires_at > :now AND chain.depth < :limit
)
SELECT id, previous_id, created_at, body FROM chain ORDER BY depth DESC
"""
_ROW = "SELECT id, previous_id, created_at, body FROM responses"
_ALIVE = "tenant = ? AND expires_at > ?"


class SqliteStore(Store):
    """One connection, used by one worker thread: sqlite calls never block the event loop."""

    def __init__(self, path: Path, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        self.path = path
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="diglot-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def put(self, record: Record) -> None:
        expires = self.expires_at(record)
        await self._run(lambda db: self._put(db, record, expires))

    async def get(self, tenant: str, response_id: str) -> Record | None:
        now = self.clock()
        row = await self._run(
            lambda db: db.execute(
                f"{_ROW} WHERE id = ? AND {_ALIVE}", (response_id, tenant, now)
            ).fetchone()
        )
        return None if row is None else _record(tenant, row)

    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        params = {"id": response_id, "tenant": tenant, "now": self.clock(), "limit": MAX_CHAIN}
        rows = await self._run(lambda db: db.execute(_CHAIN, params).fetchall())
        return [_record(tenant, row) for row in rows] or None

    async def delete(self, tenant: str, response_id: str) -> bool:
        now = self.clock()
        deleted = await self._run(
            lambda db: (
                db.execute(
                    f"DELETE FROM responses WHERE id = ? AND {_ALIVE}", (response_id, tenant, now)
                ).rowcount
            )
        )
        return bool(deleted)

    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        if not item_ids:
            return {}
        now = self.clock()
        marks = ",".join("?" * len(item_ids))
        query = (
            "SELECT items.item_id, r.id, r.previous_id, r.created_at, r.body FROM items "
            "JOIN responses AS r ON r.id = items.response_id "
            f"WHERE items.item_id IN ({marks}) AND r.tenant = ? AND r.expires_at > ?"
        )
        rows = await self._run(lambda db: db.execute(query, (*item_ids, tenant, now)).fetchall())
        return {row[0]: _record(tenant, row[1:]) for row in rows}

    async def expire(self) -> int:
        now = self.clock()
        return await self._run(
            lambda db: db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,)).rowcount
        )

    async def used_bytes(self) -> int:
        row = await self._run(lambda db: db.execute("SELECT bytes FROM budget").fetchone())
        return int(row[0])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._worker, self._close)
        self._worker.shutdown(wait=False)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """In the worker thread: (re)open the database when needed, run, map failures."""
        try:
            return work(self._open())
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"the sqlite store at {self.path} failed: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():  # prompts live here: owner only (WAL files follow the mode)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA recursive_triggers = ON")  # REPLACE counts out the old row
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        return db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _put(self, db: sqlite3.Connection, record: Record, expires: float) -> None:
        """One transaction: the row, its item index, and eviction down to the byte budget."""
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.tenant,
                    record.previous_id,
                    record.created_at,
                    expires,
                    record.size,
                    record.body,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO items VALUES (?, ?)",
                [(item_id, record.id) for item_id in record.item_ids],
            )
            if self.max_bytes is not None:
                _evict(db, self.max_bytes, record.id)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _evict(db: sqlite3.Connection, budget: int, keep: str) -> None:
    """Oldest responses first until the budget holds; the one just stored always stays."""
    (used,) = db.execute("SELECT bytes FROM budget").fetchone()
    if used <= budget:
        return
    doomed: list[tuple[str]] = []
    rows = db.execute("SELECT id, size FROM responses WHERE id != ? ORDER BY created_at", (keep,))
    for response_id, size in rows:
        if used <= budget:
            break
        doomed.append((response_id,))
        used -= size
    db.executemany("DELETE FROM responses WHERE id = ?", doomed)


def _record(tenant: str, row: tuple[str, str | None, float, bytes]) -> Record:
    return Record(id=row[0], tenant=tenant, previous_id=row[1], created_at=row[2], body=row[3])
