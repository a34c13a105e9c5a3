"""`redis://host:port/db`: responses and conversations shared by every diglot replica using
the same Redis.

Each operation is one Lua script, so it is atomic and costs one round trip: a chain is walked
inside Redis. Keys: `diglot:r:<id>` (a hash per response), `diglot:items` (item id -> response
id), `diglot:age` and `diglot:exp` (sorted sets for eviction and expiry), `diglot:bytes`; for
each conversation `diglot:c:<id>` (a hash: tenant, created, expires, metadata, items so far),
`diglot:co:<id>` (item ids scored by their place) and `diglot:cb:<id>` (item id -> JSON), and
`diglot:cexp` (a sorted set for expiry).
"""

from __future__ import annotations

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
    Order,
    Record,
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
end
return removed
"""
)
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

    async def expire(self) -> int:
        total = 0
        for script in ("expire", "expire_conversations"):
            while True:
                removed = int(await self._call(script, repr(self.clock()), _EXPIRY_BATCH))
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


def _pairs(items: list[StoredItem]) -> list[str | bytes]:
    """Each item's id, then its JSON: the tail of a script's arguments."""
    return [part for item in items for part in (item.id, item.body)]


def _conversation(conversation_id: str, tenant: str, found: list[bytes]) -> Conversation:
    return Conversation(conversation_id, tenant, float(found[0]), found[1])
