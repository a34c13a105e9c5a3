"""systemd's notify protocol (READY, STOPPING, WATCHDOG), spoken over its datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from diglot.proxy.observability import get_logger

log = get_logger()


def _address(path: str) -> str:
    """A path starting with `@` names a socket in the abstract namespace."""
    return "\0" + path[1:] if path.startswith("@") else path


def notify(state: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send one state line to $NOTIFY_SOCKET; False when not run by systemd or it failed."""
    path = env.get("NOTIFY_SOCKET")
    if not path or not (path.startswith("/") or path.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), _address(path))
    except OSError as exc:
        log.warning("sd_notify_failed", state=state, error=exc.strerror)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between pings (half of WatchdogSec) when systemd watches this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        interval = int(usec) / 2_000_000
    except ValueError:
        return None
    return interval if interval > 0 else None


async def keep_watchdog_fed(interval: float) -> None:
    """Ping from the event loop itself, so a stuck loop is what stops the pings."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
