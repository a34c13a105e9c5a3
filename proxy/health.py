"""GET /healthz (the process answers) and GET /readyz (upstreams and store usable, not draining)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.replies import json_response
from diglot.proxy.routing import Pool, Router
from diglot.proxy.state import PROXY
from diglot.proxy.store import Store, StoreUnavailable
from diglot.proxy.upstream import Upstream

Check = Callable[[], Awaitable[str | None]]  # None when fine, else the reason it is not
_CACHE_SECONDS = 1.0


@dataclass(slots=True)
class Readiness:
    """Named checks, each answer kept for a second so probes never hammer the backend."""

    checks: dict[str, Check] = field(default_factory=dict)
    draining: bool = False
    _cached: dict[str, str | None] | None = None
    _checked_at: float = 0.0

    async def reasons(self) -> dict[str, str | None]:
        now = time.monotonic()
        if self._cached is None or now - self._checked_at >= _CACHE_SECONDS:
            names = list(self.checks)
            answers = await asyncio.gather(*(self.checks[name]() for name in names))
            self._cached, self._checked_at = dict(zip(names, answers, strict=True)), now
        return self._cached


READINESS = web.AppKey("readiness", Readiness)


def upstream_check(replica: Upstream) -> Check:
    """One upstream with one replica: a TCP connect to it."""
    return replica.check


def replicas_check(pool: Pool) -> Check:
    """An upstream with replicas is ready while one of them accepts a TCP connection."""

    async def check() -> str | None:
        reasons = await asyncio.gather(*(replica.check() for replica in pool.replicas))
        if None in reasons:
            return None
        return "no live replica: " + "; ".join(reason for reason in reasons if reason)

    return check


def replica_states(router: Router) -> dict[str, dict[str, str]]:
    """Each upstream's replicas by host:port, up or down as the last request or probe found."""
    return {
        pool.name: {replica.replica: "up" if replica.live else "down" for replica in pool.replicas}
        for pool in router.pools
    }


def store_check(store: Store) -> Check:
    """A lookup of an id that never exists: the store answers, or says why it cannot."""

    async def check() -> str | None:
        try:
            await store.get("diglot-readiness", "resp_readiness_probe")
        except StoreUnavailable as exc:
            return f"store unusable: {exc}"
        return None

    return check


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return json_response({"status": "ok"}, 200)


async def readyz(request: web.Request) -> web.Response:
    """Ready, or 503 with every failing check's reason."""
    readiness = request.app[READINESS]
    if readiness.draining:
        return json_response({"status": "not ready", "reason": "shutting down"}, 503)
    results = await readiness.reasons()
    upstreams = replica_states(request.app[PROXY].router)
    failing = {name: reason for name, reason in results.items() if reason is not None}
    if failing:
        reason = "; ".join(f"{name}: {why}" for name, why in failing.items())
        checks = {name: why or "ok" for name, why in results.items()}
        body = {"status": "not ready", "reason": reason, "checks": checks, "upstreams": upstreams}
        return json_response(body, 503)
    checks = dict.fromkeys(results, "ok")
    return json_response({"status": "ready", "checks": checks, "upstreams": upstreams}, 200)


def install_health(app: web.Application, config: Config) -> Readiness:
    """The readiness checks behind /readyz: every upstream (`upstream` alone, else `upstream
    <name>` each) and, when there is one, the store."""
    router = app[PROXY].router
    if config.upstreams:
        checks = {f"upstream {pool.name}": replicas_check(pool) for pool in router.pools}
    else:
        checks = {"upstream": upstream_check(router.default)}
    store: Store | None = getattr(app[PROXY], "store", None)  # absent when no store is wired
    if store is not None:
        checks["store"] = store_check(store)
    readiness = Readiness(checks=checks)
    app[READINESS] = readiness
    return readiness
