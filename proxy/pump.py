"""An upstream stream's bytes pumped through a translating relay, whatever the direction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import aiohttp
import orjson

from diglot.proxy.observability import RequestLog, get_logger
from diglot.proxy.sse import DONE, SSEDecoder, SSEError, SSEEvent
from diglot.proxy.upstream import excerpt

Pieces = list[dict[str, Any]]
log = get_logger()


class TranslatingRelay(ABC):
    """Upstream SSE bytes through one stream translator until its terminal piece is out."""

    __slots__ = ("closed", "decoder", "record")
    what: ClassVar[str]  # what the upstream sends one of: "chunk" or "event"
    shape: ClassVar[str]  # and what one must be, as an error message names it

    def __init__(self, record: RequestLog) -> None:
        self.decoder = SSEDecoder()
        self.record = record
        self.closed = False

    def data(self, data: bytes) -> Pieces:
        """What one piece of the upstream body becomes."""
        try:
            return self._decoded(self.decoder.feed(data))
        except SSEError as exc:
            return self.fail(f"The upstream stream is malformed: {exc}", "bad_sse")

    def end(self) -> Pieces:
        """The upstream body ended (the translator reports an unfinished answer)."""
        return self._decoded(self.decoder.close()) + self._close()

    def fail(self, message: str, fault: str) -> Pieces:
        """The upstream broke off (`fault` is its kind in the log line and metrics)."""
        self.closed = True
        return self._failed(message, fault)

    def _close(self) -> Pieces:
        if self.closed:
            return []
        self.closed = True
        return self._finish()

    def _decoded(self, events: list[SSEEvent]) -> Pieces:
        out: Pieces = []
        for sse in events:
            if sse.data == DONE:
                return out + self._close()
            try:
                payload = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not JSON.", "bad_json"
                )
            if not isinstance(payload, dict):
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not an object.", "bad_json"
                )
            if not self._shaped(payload):
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not {self.shape}: "
                    f"{excerpt(sse.data)}",
                    "bad_response",
                )
            try:
                out += self._feed(payload)
            except Exception as exc:
                log.warning(
                    f"bad_upstream_{self.what}", request_id=self.record.request_id, error=repr(exc)
                )
                return out + self.fail(
                    f"The upstream sent a stream {self.what} diglot cannot read.", "bad_response"
                )
            if self.closed:
                return out
        return out

    @abstractmethod
    def _shaped(self, payload: dict[str, Any]) -> bool:
        """Whether an upstream chunk or event has the API's shape, so the translator can read it."""

    @abstractmethod
    def _feed(self, payload: dict[str, Any]) -> Pieces:
        """One upstream chunk or event through the translator; closes on the terminal one."""

    @abstractmethod
    def _finish(self) -> Pieces:
        """The translator's end, the upstream having said it is done."""

    @abstractmethod
    def _failed(self, message: str, fault: str) -> Pieces:
        """The translator's failure pieces, noted in the request's record."""


async def translated(
    upstream: aiohttp.ClientResponse, relay: TranslatingRelay
) -> AsyncGenerator[Pieces, None]:
    """What to send the client as the upstream's bytes arrive; a broken upstream still ends it."""
    chunks = upstream.content.iter_any()
    while not relay.closed:
        try:
            data = await chunks.__anext__()
        except StopAsyncIteration:
            pieces = relay.end()
        except TimeoutError:
            pieces = relay.fail(
                "The upstream stopped sending in the middle of the answer.", "timeout"
            )
        except aiohttp.ClientError as exc:
            pieces = relay.fail(f"The upstream connection broke mid-stream: {exc}", "broken_stream")
        else:
            pieces = relay.data(data)
        if pieces:
            yield pieces
