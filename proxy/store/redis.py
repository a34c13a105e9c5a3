"""`redis://host:port/db`: responses shared by every diglot replica using the same Redis.

Each operation is one Lua script, so it is atomic and costs one round trip: a chain is walked
inside Redis. Keys: `diglot:r:<id>` (a hash per response), `diglot:items` (item id -> response
id), `diglot:age` and `diglot:exp` (sorted sets for eviction and expiry), `diglot:bytes`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from diglot.proxy.store import MAX_CHAIN, Clock, Record, Store, StoreUnavailable

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

    async def expire(self) -> int:
        total = 0
        while True:
            removed = int(await self._call("expire", repr(self.clock()), _EXPIRY_BATCH))
            total += removed
            if removed < _EXPIRY_BATCH:
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
