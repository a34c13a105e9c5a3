"""`redis://host:port/db`: responses and conversations shared by every diglot replica using
the same Redis.

Each operation is one Lua script, so it is atomic and costs one round trip: a chain is walked
inside Redis. Keys: `diglot:r:<id>` (a hash per response), `diglot:items` (item id -> response
id), `diglot:age` and `diglot:exp` (sorted sets for eviction and expiry), `diglot:bytes`; for
each conversation `diglot:c:<id>` (a hash: tenant, created, expires, metadata, items so far),
`diglot:co:<id>` (item ids scored by their place) and `diglot:cb:<id>` (item id -> JSON), and
`diglot:cexp` (a sorted set for expiry); for each running background response `diglot:run:<id>`
(a hash: tenant, owner, lease end, cancel asked, progress) and `diglot:runs` (a sorted set by
lease end); for each response's kept events `diglot:ev:<id>` (a list of frames) and
`diglot:evm:<id>` (a hash: first and next sequence numbers, bytes, expiry), and `diglot:eexp`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError

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

PREFIX = "diglot:"

_REMOVE = """
local p = ARGV[1]
local function remove(id)
  local key = p .. 'r:' .. id
  local f = redis.call('HMGET', key, 's', 'i')
  if not f[1] then return 0 end
  redis.call('DECRBY', p .. 'bytes', f[1])
  for _, item in ipairs(cjson.decode(f[2])) do
    if redis.call('HGET', p .. 'items', item) == id then redis.call('HDEL', p .. 'items', item) end
  end
  redis.call('DEL', key)
  redis.call('ZREM', p .. 'age', id)
  redis.call('ZREM', p .. 'exp', id)
  return 1
end
local function alive(f, tenant, now)
  return f[1] and f[1] == tenant and tonumber(f[2]) > now
end
local function forget(id)
  redis.call('DEL', p .. 'run:' .. id, p .. 'ev:' .. id, p .. 'evm:' .. id)
  redis.call('ZREM', p .. 'runs', id)
  redis.call('ZREM', p .. 'eexp', id)
end
"""
# ARGV: prefix, id, tenant, previous id or '', created, expires, size, body, budget, item ids
_PUT = (
    _REMOVE
    + """
local id = ARGV[2]
remove(id)
local items = {}
for i = 10, #ARGV do
  items[#items + 1] = ARGV[i]
  redis.call('HSET', p .. 'items', ARGV[i], id)
end
redis.call('HSET', p .. 'r:' .. id, 't', ARGV[3], 'p', ARGV[4], 'c', ARGV[5], 'e', ARGV[6],
  's', ARGV[7], 'b', ARGV[8], 'i', cjson.encode(items))
redis.call('ZADD', p .. 'age', ARGV[5], id)
redis.call('ZADD', p .. 'exp', ARGV[6], id)
local used = redis.call('INCRBY', p .. 'bytes', ARGV[7])
local budget = tonumber(ARGV[9])
while budget > 0 and used > budget do
  local oldest = redis.call('ZRANGE', p .. 'age', 0, 1)
  local victim = oldest[1]
  if victim == id then victim = oldest[2] end
  if not victim then break end
  remove(victim)
  forget(victim)
  used = tonumber(redis.call('GET', p .. 'bytes'))
end
return 1
"""
)
# ARGV: prefix, id, tenant, now, limit -> {{id, previous id, created, body}, ...} newest first
_CHAIN = (
    _REMOVE
    + """
local id, tenant, now, limit = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
while id ~= '' and #out < limit do
  local f = redis.call('HMGET', p .. 'r:' .. id, 't', 'e', 'p', 'c', 'b')
  if not alive(f, tenant, now) then break end
  out[#out + 1] = {id, f[3], f[4], f[5]}
  id = f[3]
end
return out
"""
)
# ARGV: prefix, id, tenant, now
_DELETE = (
    _REMOVE
    + """
local f = redis.call('HMGET', p .. 'r:' .. ARGV[2], 't', 'e')
if not alive(f, ARGV[3], tonumber(ARGV[4])) then return 0 end
forget(ARGV[2])
return remove(ARGV[2])
"""
)
# ARGV: prefix, tenant, now, item ids -> {{item id, id, previous id, created, body}, ...}
_LOCATE = (
    _REMOVE
    + """
local tenant, now = ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local id = redis.call('HGET', p .. 'items', ARGV[i])
  if id then
    local f = redis.call('HMGET', p .. 'r:' .. id, 't', 'e', 'p', 'c', 'b')
    if alive(f, tenant, now) then out[#out + 1] = {ARGV[i], id, f[3], f[4], f[5]} end
  end
end
return out
"""
)
# ARGV: prefix, now, batch -> how many were removed
_EXPIRE = (
    _REMOVE
    + """
local removed = 0
local due = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  removed = removed + remove(id)
  forget(id)
end
return removed
"""
)
# ARGV: prefix, now, batch -> how many responses' kept events were removed
_EXPIRE_EVENTS = (
    _REMOVE
    + """
local due = redis.call('ZRANGEBYSCORE', p .. 'eexp', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  forget(id)
end
return #due
"""
)
# ARGV: prefix, id, tenant, owner, lease end
_CLAIM_RUN = """
local p, id = ARGV[1], ARGV[2]
local key = p .. 'run:' .. id
redis.call('DEL', key)
redis.call('HSET', key, 't', ARGV[3], 'o', ARGV[4], 'u', ARGV[5], 'c', 0)
redis.call('ZADD', p .. 'runs', ARGV[5], id)
return 1
"""
# ARGV: prefix, owner, lease end, then id and progress ('' for unchanged) for each run
# -> {ids a cancel was asked for, ids no longer the owner's}
_RENEW_RUNS = """
local p, owner, lease = ARGV[1], ARGV[2], ARGV[3]
local cancel, lost = {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local key = p .. 'run:' .. id
  local f = redis.call('HMGET', key, 'o', 'c')
  if f[1] ~= owner then
    lost[#lost + 1] = id
  else
    redis.call('HSET', key, 'u', lease)
    if ARGV[i + 1] ~= '' then redis.call('HSET', key, 'p', ARGV[i + 1]) end
    redis.call('ZADD', p .. 'runs', lease, id)
    if f[2] == '1' then cancel[#cancel + 1] = id end
  end
end
return {cancel, lost}
"""
# ARGV: prefix, id
_END_RUN = """
redis.call('DEL', ARGV[1] .. 'run:' .. ARGV[2])
return redis.call('ZREM', ARGV[1] .. 'runs', ARGV[2])
"""
# ARGV: prefix, id, tenant -> 1 when the run was asked to cancel
_CANCEL_RUN = """
local key = ARGV[1] .. 'run:' .. ARGV[2]
if redis.call('HGET', key, 't') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'c', 1)
return 1
"""
# ARGV: prefix, id, tenant -> the run's progress, or nil
_RUN_PROGRESS = """
local f = redis.call('HMGET', ARGV[1] .. 'run:' .. ARGV[2], 't', 'p')
if f[1] ~= ARGV[3] then return nil end
return f[2]
"""
# ARGV: prefix, now, batch, owner, lease end -> {{id, tenant, progress or ''}, ...}, taken
_LAPSED_RUNS = """
local p = ARGV[1]
local out = {}
local due = redis.call('ZRANGEBYSCORE', p .. 'runs', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  local key = p .. 'run:' .. id
  local f = redis.call('HMGET', key, 't', 'p')
  if f[1] then
    redis.call('HSET', key, 'o', ARGV[4], 'u', ARGV[5])
    redis.call('ZADD', p .. 'runs', ARGV[5], id)
    out[#out + 1] = {id, f[1], f[2] or ''}
  else
    redis.call('ZREM', p .. 'runs', id)
  end
end
return out
"""
# ARGV: prefix, id, expiry, cap, then sequence number and frame for each event
_KEEP_EVENTS = """
local p, id, cap = ARGV[1], ARGV[2], tonumber(ARGV[4])
local list, meta = p .. 'ev:' .. id, p .. 'evm:' .. id
local m = redis.call('HMGET', meta, 'f', 'n', 'b')
local first, following, size
if m[1] then
  first, following, size = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
else
  first, following, size = tonumber(ARGV[5]), tonumber(ARGV[5]), 0
  redis.call('HSET', meta, 'e', ARGV[3])
  redis.call('ZADD', p .. 'eexp', ARGV[3], id)
end
for i = 5, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq >= following then
    if seq > following then  -- one was lost: what is kept cannot be continued
      redis.call('DEL', list)
      first, size = seq, 0
    end
    redis.call('RPUSH', list, ARGV[i + 1])
    size = size + #ARGV[i + 1]
    following = seq + 1
  end
end
while size > cap and first < following - 1 do
  size = size - #redis.call('LPOP', list)
  first = first + 1
end
redis.call('HSET', meta, 'f', first, 'n', following, 'b', size)
return 1
"""
# ARGV: prefix, id, now, after -> {first, next, frame, ...}
_KEPT_EVENTS = """
local p, id = ARGV[1], ARGV[2]
local m = redis.call('HMGET', p .. 'evm:' .. id, 'f', 'n', 'e')
if not m[1] or tonumber(m[3]) <= tonumber(ARGV[3]) then return {0, 0} end
local first = tonumber(m[1])
local out = {first, tonumber(m[2])}
local start = math.max(tonumber(ARGV[4]) + 1 - first, 0)
for _, frame in ipairs(redis.call('LRANGE', p .. 'ev:' .. id, start, -1)) do
  out[#out + 1] = frame
end
return out
"""
_CONVERSATION = """
local p = ARGV[1]
local function live(id, tenant, now)
  local f = redis.call('HMGET', p .. 'c:' .. id, 't', 'e', 'c', 'm')
  if f[1] and f[1] == tenant and tonumber(f[2]) > now then return f end
  return nil
end
local function drop(id)
  redis.call('DEL', p .. 'c:' .. id, p .. 'co:' .. id, p .. 'cb:' .. id)
  return redis.call('ZREM', p .. 'cexp', id)
end
local function touch(id, expires)
  redis.call('HSET', p .. 'c:' .. id, 'e', expires)
  redis.call('ZADD', p .. 'cexp', expires, id)
end
local function append(id, first)
  for i = first, #ARGV, 2 do
    local place = redis.call('HINCRBY', p .. 'c:' .. id, 'n', 1)
    redis.call('ZADD', p .. 'co:' .. id, place, ARGV[i])
    redis.call('HSET', p .. 'cb:' .. id, ARGV[i], ARGV[i + 1])
  end
end
"""
# ARGV: prefix, id, tenant, created, expires, metadata, then item id and JSON for each item
_CREATE_CONVERSATION = (
    _CONVERSATION
    + """
local id = ARGV[2]
drop(id)
redis.call('HSET', p .. 'c:' .. id, 't', ARGV[3], 'c', ARGV[4], 'm', ARGV[6], 'n', 0)
touch(id, ARGV[5])
append(id, 7)
return 1
"""
)
# ARGV: prefix, id, tenant, now -> {created, metadata} or nil
_GET_CONVERSATION = (
    _CONVERSATION
    + """
local f = live(ARGV[2], ARGV[3], tonumber(ARGV[4]))
if not f then return nil end
return {f[3], f[4]}
"""
)
# ARGV: prefix, id, tenant, now, expires, metadata -> {created, metadata} or nil
_SET_METADATA = (
    _CONVERSATION
    + """
local f = live(ARGV[2], ARGV[3], tonumber(ARGV[4]))
if not f then return nil end
redis.call('HSET', p .. 'c:' .. ARGV[2], 'm', ARGV[6])
touch(ARGV[2], ARGV[5])
return {f[3], ARGV[6]}
"""
)
# ARGV: prefix, id, tenant, now -> 1 when deleted
_DELETE_CONVERSATION = (
    _CONVERSATION
    + """
if not live(ARGV[2], ARGV[3], tonumber(ARGV[4])) then return 0 end
return drop(ARGV[2])
"""
)
# ARGV: prefix, id, tenant, now, expires, then item id and JSON for each item
# -> 0 (no such conversation), 1 (added) or the id of an item the conversation holds already
_ADD_ITEMS = (
    _CONVERSATION
    + """
local id = ARGV[2]
if not live(id, ARGV[3], tonumber(ARGV[4])) then return 0 end
for i = 6, #ARGV, 2 do
  if redis.call('HEXISTS', p .. 'cb:' .. id, ARGV[i]) == 1 then return ARGV[i] end
end
append(id, 6)
touch(id, ARGV[5])
return 1
"""
)
# ARGV: prefix, id, tenant, now, order, after or '', limit or 0 for all
# -> nil (no such conversation, or `after` is not in it) or {has more, id, JSON, id, JSON, ...}
_ITEMS = (
    _CONVERSATION
    + """
local id, after, limit = ARGV[2], ARGV[6], tonumber(ARGV[7])
if not live(id, ARGV[3], tonumber(ARGV[4])) then return nil end
local key = p .. 'co:' .. id
local asc = ARGV[5] == 'asc'
local from = asc and '-inf' or '+inf'
if after ~= '' then
  local place = redis.call('ZSCORE', key, after)
  if not place then return nil end
  from = '(' .. place
end
local to = asc and '+inf' or '-inf'
local verb = asc and 'ZRANGEBYSCORE' or 'ZREVRANGEBYSCORE'
local ids
if limit > 0 then
  ids = redis.call(verb, key, from, to, 'LIMIT', 0, limit + 1)
else
  ids = redis.call(verb, key, from, to)
end
local more = 0
if limit > 0 and #ids > limit then
  more = 1
  ids[#ids] = nil
end
local out = {more}
for first = 1, #ids, 1000 do  -- unpack takes a few thousand values at most
  local some = {}
  for i = first, math.min(first + 999, #ids) do some[#some + 1] = ids[i] end
  local bodies = redis.call('HMGET', p .. 'cb:' .. id, unpack(some))
  for i, item in ipairs(some) do
    out[#out + 1] = item
    out[#out + 1] = bodies[i]
  end
end
return out
"""
)
# ARGV: prefix, id, tenant, now, item id -> its JSON or nil
_GET_ITEM = (
    _CONVERSATION
    + """
if not live(ARGV[2], ARGV[3], tonumber(ARGV[4])) then return nil end
return redis.call('HGET', p .. 'cb:' .. ARGV[2], ARGV[5])
"""
)
# ARGV: prefix, id, tenant, now, expires, item id -> {created, metadata} or nil
_DELETE_ITEM = (
    _CONVERSATION
    + """
local f = live(ARGV[2], ARGV[3], tonumber(ARGV[4]))
if not f then return nil end
if redis.call('ZREM', p .. 'co:' .. ARGV[2], ARGV[6]) == 0 then return nil end
redis.call('HDEL', p .. 'cb:' .. ARGV[2], ARGV[6])
touch(ARGV[2], ARGV[5])
return {f[3], f[4]}
"""
)
# ARGV: prefix, now, batch -> how many conversations were removed
_EXPIRE_CONVERSATIONS = (
    _CONVERSATION
    + """
local removed = 0
local due = redis.call('ZRANGEBYSCORE', p .. 'cexp', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  removed = removed + drop(id)
end
return removed
"""
)
_EXPIRY_BATCH = 500


class RedisStore(Store):
    """The `redis` package's asyncio client; connection trouble is StoreUnavailable."""

    def __init__(self, url: str, ttl: float, max_bytes: int | None, clock: Clock) -> None:
        super().__init__(ttl, max_bytes, clock)
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"  # no password
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("put", _PUT),
                ("chain", _CHAIN),
                ("delete", _DELETE),
                ("locate", _LOCATE),
                ("expire", _EXPIRE),
                ("create_conversation", _CREATE_CONVERSATION),
                ("get_conversation", _GET_CONVERSATION),
                ("set_metadata", _SET_METADATA),
                ("delete_conversation", _DELETE_CONVERSATION),
                ("add_items", _ADD_ITEMS),
                ("items", _ITEMS),
                ("get_item", _GET_ITEM),
                ("delete_item", _DELETE_ITEM),
                ("expire_conversations", _EXPIRE_CONVERSATIONS),
                ("expire_events", _EXPIRE_EVENTS),
                ("claim_run", _CLAIM_RUN),
                ("renew_runs", _RENEW_RUNS),
                ("end_run", _END_RUN),
                ("cancel_run", _CANCEL_RUN),
                ("run_progress", _RUN_PROGRESS),
                ("lapsed_runs", _LAPSED_RUNS),
                ("keep_events", _KEEP_EVENTS),
                ("kept_events", _KEPT_EVENTS),
            )
        }
        self._closed = False

    async def put(self, record: Record) -> None:
        await self._call(
            "put",
            record.id,
            record.tenant,
            record.previous_id or "",
            repr(record.created_at),
            repr(self.expires_at(record)),
            record.size,
            record.body,
            self.max_bytes or 0,
            *record.item_ids,
        )

    async def get(self, tenant: str, response_id: str) -> Record | None:
        rows = await self._call("chain", response_id, tenant, repr(self.clock()), 1)
        return _record(tenant, rows[0]) if rows else None

    async def chain(self, tenant: str, response_id: str) -> list[Record] | None:
        rows = await self._call("chain", response_id, tenant, repr(self.clock()), MAX_CHAIN)
        return [_record(tenant, row) for row in reversed(rows)] or None

    async def delete(self, tenant: str, response_id: str) -> bool:
        return bool(await self._call("delete", response_id, tenant, repr(self.clock())))

    async def locate(self, tenant: str, item_ids: list[str]) -> dict[str, Record]:
        if not item_ids:
            return {}
        rows = await self._call("locate", tenant, repr(self.clock()), *item_ids)
        return {row[0].decode(): _record(tenant, row[1:]) for row in rows}

    async def put_conversation(self, conversation: Conversation, items: list[StoredItem]) -> None:
        taken = repeated_id(items)
        if taken is not None:
            raise ItemIdTaken(taken)
        await self._call(
            "create_conversation",
            conversation.id,
            conversation.tenant,
            repr(conversation.created_at),
            repr(self.conversation_expires_at()),
            conversation.metadata,
            *_pairs(items),
        )

    async def get_conversation(self, tenant: str, conversation_id: str) -> Conversation | None:
        found = await self._call("get_conversation", conversation_id, tenant, repr(self.clock()))
        return None if found is None else _conversation(conversation_id, tenant, found)

    async def set_conversation_metadata(
        self, tenant: str, conversation_id: str, metadata: bytes
    ) -> Conversation | None:
        found = await self._call(
            "set_metadata",
            conversation_id,
            tenant,
            repr(self.clock()),
            repr(self.conversation_expires_at()),
            metadata,
        )
        return None if found is None else _conversation(conversation_id, tenant, found)

    async def delete_conversation(self, tenant: str, conversation_id: str) -> bool:
        now = repr(self.clock())
        return bool(await self._call("delete_conversation", conversation_id, tenant, now))

    async def add_conversation_items(
        self, tenant: str, conversation_id: str, items: list[StoredItem]
    ) -> bool:
        taken = repeated_id(items)
        if taken is not None:
            raise ItemIdTaken(taken)
        outcome = await self._call(
            "add_items",
            conversation_id,
            tenant,
            repr(self.clock()),
            repr(self.conversation_expires_at()),
            *_pairs(items),
        )
        if isinstance(outcome, bytes):
            raise ItemIdTaken(outcome.decode())
        return bool(outcome)

    async def conversation_items(
        self,
        tenant: str,
        conversation_id: str,
        *,
        order: Order = "asc",
        after: str | None = None,
        limit: int | None = None,
    ) -> ItemSlice | None:
        found = await self._call(
            "items", conversation_id, tenant, repr(self.clock()), order, after or "", limit or 0
        )
        if found is None:
            return None
        flat = found[1:]
        items = [StoredItem(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
        return ItemSlice(items, bool(found[0]))

    async def get_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> StoredItem | None:
        now = repr(self.clock())
        body = await self._call("get_item", conversation_id, tenant, now, item_id)
        return None if body is None else StoredItem(item_id, body)

    async def delete_conversation_item(
        self, tenant: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        found = await self._call(
            "delete_item",
            conversation_id,
            tenant,
            repr(self.clock()),
            repr(self.conversation_expires_at()),
            item_id,
        )
        return None if found is None else _conversation(conversation_id, tenant, found)

    async def claim_run(self, response_id: str, tenant: str, owner: str, lease: float) -> None:
        until = repr(self.clock() + lease)
        await self._call("claim_run", response_id, tenant, owner, until)

    async def renew_runs(
        self, owner: str, progress: Mapping[str, bytes | None], lease: float
    ) -> Renewal:
        if not progress:
            return Renewal()
        pairs = [part for rid, made in progress.items() for part in (rid, made or b"")]
        cancel, lost = await self._call("renew_runs", owner, repr(self.clock() + lease), *pairs)
        return Renewal(frozenset(_texts(cancel)), frozenset(_texts(lost)))

    async def end_run(self, response_id: str) -> None:
        await self._call("end_run", response_id)

    async def cancel_run(self, tenant: str, response_id: str) -> bool:
        return bool(await self._call("cancel_run", response_id, tenant))

    async def run_progress(self, tenant: str, response_id: str) -> bytes | None:
        progress: bytes | None = await self._call("run_progress", response_id, tenant)
        return progress

    async def lapsed_runs(self, owner: str, lease: float) -> list[LapsedRun]:
        lapsed: list[LapsedRun] = []
        now = self.clock()
        until = repr(now + lease)
        while True:
            rows = await self._call("lapsed_runs", repr(now), _EXPIRY_BATCH, owner, until)
            lapsed += [LapsedRun(row[0].decode(), row[1].decode(), row[2] or None) for row in rows]
            if len(rows) < _EXPIRY_BATCH:
                return lapsed

    async def keep_events(
        self, response_id: str, created_at: float, frames: Sequence[tuple[int, bytes]], cap: int
    ) -> None:
        if not frames:
            return
        pairs = [part for seq, frame in frames for part in (seq, frame)]
        expires = repr(created_at + self.ttl)
        await self._call("keep_events", response_id, expires, cap, *pairs)

    async def kept_events(self, response_id: str, after: int) -> KeptEvents:
        found = await self._call("kept_events", response_id, repr(self.clock()), after)
        return KeptEvents(found[2:], int(found[0]), int(found[1]))

    async def expire(self) -> int:
        """Responses and conversations, counted; kept events go with their responses."""
        total = 0
        for script in ("expire", "expire_conversations", "expire_events"):
            while True:
                removed = int(await self._call(script, repr(self.clock()), _EXPIRY_BATCH))
                if script != "expire_events":
                    total += removed
                if removed < _EXPIRY_BATCH:
                    break
        return total

    async def used_bytes(self) -> int:
        if self._closed:
            raise StoreUnavailable("the redis store is closed")
        try:
            used = await self._redis.get(PREFIX + "bytes")
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the redis store at {self.where} failed: {exc}") from exc
        return int(used or 0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._redis.aclose()

    async def _call(self, script: str, *args: Any) -> Any:
        if self._closed:
            raise StoreUnavailable("the redis store is closed")
        try:
            return await self._scripts[script](args=(PREFIX, *args))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the redis store at {self.where} failed: {exc}") from exc


def _record(tenant: str, row: list[bytes]) -> Record:
    previous = row[1].decode()
    return Record(
        id=row[0].decode(),
        tenant=tenant,
        previous_id=previous or None,
        created_at=float(row[2]),
        body=row[3],
    )


def _texts(values: list[bytes]) -> list[str]:
    return [value.decode() for value in values]


def _pairs(items: list[StoredItem]) -> list[str | bytes]:
    """Each item's id, then its JSON: the tail of a script's arguments."""
    return [part for item in items for part in (item.id, item.body)]


def _conversation(conversation_id: str, tenant: str, found: list[bytes]) -> Conversation:
    return Conversation(conversation_id, tenant, float(found[0]), found[1])
