"""Running as a service: readiness to systemd, watchdog pings, SIGHUP reloads, SIGTERM drains."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import asyncio.sslproto
import contextlib
import gc
import signal
from collections.abc import Callable

from aiohttp import web

from diglot.proxy import systemd
from diglot.proxy.auth import CLIENT_KEYS
from diglot.proxy.health import READINESS
from diglot.proxy.observability import get_logger

log = get_logger()
# The most one socket read returns. asyncio allocates a fresh 256 KiB for every read and shrinks
# it to what arrived (often one small event); glibc takes those from its heap once start-up has
# raised its mmap threshold, and the event bytes left between them fragment the heap, so resident
# memory creeps up under many streams with nothing retained. Reads this size fit the holes
# already there; it is also the largest TLS record.
READ_BYTES = 16 * 1024


def run(
    app: web.Application,
    host: str,
    port: int,
    drain_timeout: float,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight requests finish for up to drain_timeout."""
    read_in_small_pieces()
    asyncio.run(_serve(app, host, port, drain_timeout, on_ready))


def reload(app: web.Application) -> None:
    """What SIGHUP re-reads without touching open connections: the client keys file."""
    app[CLIENT_KEYS].reload()


def read_in_small_pieces() -> None:
    """Socket reads no larger than READ_BYTES, plain and TLS, so reading does not fragment."""
    asyncio.selector_events._SelectorSocketTransport.max_size = READ_BYTES  # type: ignore[attr-defined]
    asyncio.sslproto.SSLProtocol.max_size = READ_BYTES


def _settle_heap() -> None:
    """Keep start-up objects out of every later collection, and collect young objects less often.

    Each request allocates many short-lived containers; the default thresholds run the cyclic
    collector so often that it costs more CPU than translating does.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 5, 10)


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    drain_timeout: float,
    on_ready: Callable[[str], None] | None,
) -> None:
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,  # a client that goes away cancels its upstream request
        auto_decompress=False,  # proxy.inbound decodes bodies itself, under the size limit
        shutdown_timeout=drain_timeout,
    )
    await runner.setup()
    _settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload, app)
    watchdog: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        systemd.notify("READY=1\nSTATUS=Serving")
        log.info("serving", url=site.name)
        if on_ready is not None:
            on_ready(site.name)
        interval = systemd.watchdog_interval()
        if interval is not None:
            watchdog = asyncio.create_task(systemd.keep_watchdog_fed(interval))
        await stop.wait()
        log.info("draining", timeout_s=drain_timeout)
        systemd.notify("STOPPING=1\nSTATUS=Draining")
        app[READINESS].draining = True
    finally:
        await runner.cleanup()
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")
