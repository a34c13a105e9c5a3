"""GET /healthz (the process answers) and GET /readyz (upstream and store usable, not draining)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.replies import json_response
from diglot.proxy.state import PROXY
from diglot.proxy.store import Store, StoreUnavailable

Check = Callable[[], Awaitable[str | None]]  # None when fine, else the reason it is not
_PROBE_TIMEOUT = 2.0
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


def upstream_check(config: Config) -> Check:
    """A TCP connect to the upstream: cheap, needs no key, and proves the backend listens."""
    parts = urlsplit(config.upstream)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = min(config.connect_timeout, _PROBE_TIMEOUT)

    async def check() -> str | None:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return f"upstream {host}:{port} did not accept a connection within {timeout:g}s"
        except OSError as exc:
            return f"upstream {host}:{port} is unreachable: {exc.strerror or exc}"
        writer.close()
        return None

    return check


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
    failing = {name: reason for name, reason in results.items() if reason is not None}
    if failing:
        reason = "; ".join(f"{name}: {why}" for name, why in failing.items())
        checks = {name: why or "ok" for name, why in results.items()}
        return json_response({"status": "not ready", "reason": reason, "checks": checks}, 503)
    return json_response({"status": "ready", "checks": dict.fromkeys(results, "ok")}, 200)


def install_health(app: web.Application, config: Config) -> Readiness:
    """The readiness checks behind /readyz: the upstream and, when there is one, the store."""
    checks = {"upstream": upstream_check(config)}
    store: Store | None = getattr(app[PROXY], "store", None)  # absent when no store is wired
    if store is not None:
        checks["store"] = store_check(store)
    readiness = Readiness(checks=checks)
    app[READINESS] = readiness
    return readiness
