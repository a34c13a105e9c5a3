"""Limits that keep one client or one burst from taking the proxy or its backend down."""

from __future__ import annotations

import asyncio
import math
from collections import deque

from diglot.translators.errors import RequestError


class Overloaded(RequestError):
    """429: every upstream slot stayed busy for the whole wait; the client should retry."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "Too many concurrent requests; please retry after a short wait.",
            code="rate_limit_exceeded",
            status=429,
            error_type="rate_limit_error",
        )
        self.retry_after = str(max(1, math.ceil(retry_after)))


class UpstreamSlots:
    """At most `limit` upstream requests at once; the rest queue for at most `wait` seconds.

    A counter and a queue of futures rather than asyncio.Semaphore, whose `locked()` scans its
    waiters: taking a free slot is the path every request goes through.
    """

    __slots__ = ("_free", "_queue", "_wait", "waiting")

    def __init__(self, limit: int, wait: float) -> None:
        self._free = limit
        self._queue: deque[asyncio.Future[None]] = deque()
        self._wait = wait
        self.waiting = 0  # requests queued for a slot right now

    async def acquire(self) -> None:
        """Take a slot, held for the whole exchange (stream included) until `release`."""
        if self._free > 0:  # then no one is waiting: a release hands its slot to a waiter
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        self.waiting += 1
        try:
            async with asyncio.timeout(self._wait):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a slot just as the wait ended: pass it on
            if isinstance(exc, TimeoutError):
                raise Overloaded(self._wait) from None
            raise
        finally:
            self.waiting -= 1

    def release(self) -> None:
        """Hand the slot to the longest waiter still waiting, else free it."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


def check_item_count(count: int, limit: int, param: str) -> None:
    """A 400 in OpenAI's words for an array longer than --max-input-items."""
    if count > limit:
        raise RequestError(
            f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
            f"but got an array with length {count} instead.",
            param,
            "array_above_max_length",
        )


def too_deep(param: str | None = None) -> RequestError:
    """The 400 for a body nested deeper than the JSON decoder goes."""
    return RequestError(
        "The request body is nested too deeply to be decoded.", param, "invalid_json"
    )
