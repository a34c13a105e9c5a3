"""Running as a service: readiness to systemd, watchdog pings, SIGHUP reloads, SIGTERM drains."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import asyncio.sslproto
import contextlib
import gc
import os
import signal
from collections.abc import Callable

from aiohttp import web

from diglot.proxy import systemd
from diglot.proxy.auth import CLIENT_KEYS
from diglot.proxy.config import Config
from diglot.proxy.health import READINESS
from diglot.proxy.observability import get_logger
from diglot.proxy.state import PROXY

log = get_logger()
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
# The most one socket read returns on asyncio's own loop. asyncio allocates a fresh 256 KiB for
# every read and shrinks it to what arrived (often one small event); glibc takes those from its
# heap once start-up has raised its mmap threshold, and the event bytes left between them
# fragment the heap, so resident memory creeps up under many streams with nothing retained.
# Reads this size fit the holes already there; it is also the largest TLS record.
READ_BYTES = 16 * 1024


class CannotListen(Exception):
    """The address to serve on could not be had (in use, not ours, no such host)."""


def run(
    app: web.Application,
    host: str,
    port: int,
    drain_timeout: float,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight requests finish for up to drain_timeout.

    Raises CannotListen, having logged nothing, when host:port cannot be bound.
    """
    factory = loop_factory(app[PROXY].config)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(app, host, port, drain_timeout, on_ready))


def loop_factory(config: Config) -> LoopFactory | None:
    """uvloop where it is installed, since the event loop is most of each request's CPU.

    uvloop reads plain sockets into one 256 KiB buffer per loop and copies out only what
    arrived, so those reads leave no holes in the heap; its TLS reads allocate 256 KiB each, with
    no way to ask for less. So diglot keeps asyncio's loop, reading in small pieces, when it
    reads TLS itself (None: asyncio's default loop).
    """
    if not reads_tls(config):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    read_in_small_pieces()
    return None


def reads_tls(config: Config) -> bool:
    """Whether diglot's own connections are TLS: an https upstream or a rediss:// store."""
    urls = (url for upstream in config.upstream_settings() for url in upstream.urls)
    return any(url.startswith("https:") for url in urls) or (config.store or "").startswith(
        "rediss:"
    )


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


def _address(host: str, port: int) -> str:
    """host:port as a URL writes it ([::1]:8080 for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    """Why a bind failed, in the system's words ("address already in use")."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()  # a name lookup: "name or service not known"


async def _listen(runner: web.AppRunner, host: str, port: int) -> web.TCPSite:
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise CannotListen(f"cannot listen on {_address(host, port)}: {_reason(exc)}") from None
    return site


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
        site = await _listen(runner, host, port)
        systemd.notify("READY=1\nSTATUS=Serving")
        _log_serving(app, site.name, loop)
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


def _log_serving(app: web.Application, url: str, loop: asyncio.AbstractEventLoop) -> None:
    """One line once listening: where, in front of what, on which event loop."""
    config = app[PROXY].config
    log.info(
        "serving",
        url=url,
        upstream=config.upstream,
        upstream_api=config.upstream_api,
        loop=type(loop).__module__.split(".")[0],
    )
