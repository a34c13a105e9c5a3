"""An upstream stream's bytes pumped through a translating relay, whatever the direction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
import orjson

from diglot.proxy.observability import RequestLog, get_logger
from diglot.proxy.sse import DONE, SSEDecoder, SSEError, SSEEvent
from diglot.proxy.upstream import excerpt
from diglot.translators.stream.lifecycle import StreamClosed, StreamPhase, StreamTranslator

Pieces = list[Any]  # JSON-ready Responses events or Chat chunks (see `translators.*_shapes`)
Emit = Callable[[Pieces], Awaitable[None]]  # hands translated pieces to the client's transport
log = get_logger()
_OPEN = StreamPhase.OPEN  # a module global: an Enum member looked up on its class costs more
_FAILED = "server_error"  # the code of a failure diglot reports for the upstream
_Translator = TypeVar("_Translator", bound=StreamTranslator)


class TranslatingRelay(ABC, Generic[_Translator]):
    """Upstream SSE bytes through one stream translator until the translator says it is over.

    Whatever ends the stream (a terminal piece, the upstream's end, a break), the translator's
    usage and error then go to the request's record, once.
    """

    __slots__ = ("decoder", "record", "translator")
    what: ClassVar[str]  # what the upstream sends one of: "chunk" or "event"
    shape: ClassVar[str]  # and what one must be, as an error message names it

    def __init__(self, record: RequestLog, translator: _Translator) -> None:
        self.decoder = SSEDecoder()
        self.record = record
        self.translator = translator

    @property
    def closed(self) -> bool:
        """The translator has sent its last piece."""
        return self.translator.phase is not _OPEN

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
        pieces = self.translator.fail(message, _FAILED)
        self._ended(fault)
        return pieces

    def _close(self) -> Pieces:
        """The upstream said it is done: the translator's end, unless it ended already."""
        if self.closed:
            return []
        pieces = self.translator.finish()
        self._ended("broken_stream")
        return pieces

    def _ended(self, fault: str) -> None:
        """The ended translator's usage, and its error as an upstream fault of kind `fault`."""
        translator = self.translator
        count_usage(self.record, translator.usage)
        error = translator.error
        if error is not None:
            self.record.error = error.message
            self.record.upstream_fault(fault)

    def _decoded(self, events: list[SSEEvent]) -> Pieces:
        out: Pieces = []
        translator, shaped = self.translator, self._shaped
        for _, data in events:
            if data == DONE:
                return out + self._close()
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not JSON.", "bad_json"
                )
            if not isinstance(payload, dict):
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not an object.", "bad_json"
                )
            if not shaped(payload):
                return out + self.fail(
                    f"The upstream sent a stream {self.what} that is not {self.shape}: "
                    f"{excerpt(data)}",
                    "bad_response",
                )
            try:
                pieces = translator.feed(payload)
            except StreamClosed:
                raise  # diglot's own bug, not the upstream's
            except Exception as exc:
                log.warning(
                    f"bad_upstream_{self.what}", request_id=self.record.request_id, error=repr(exc)
                )
                return out + self.fail(
                    f"The upstream sent a stream {self.what} diglot cannot read.", "bad_response"
                )
            out += pieces
            if translator.phase is not _OPEN:
                self._ended("error_event")
                return out
        return out

    @abstractmethod
    def _shaped(self, payload: dict[str, Any]) -> bool:
        """Whether an upstream chunk or event has the API's shape, so the translator can read it."""


async def translated(
    upstream: aiohttp.ClientResponse, relay: TranslatingRelay[Any]
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


def count_usage(record: RequestLog, usage: object) -> None:
    """Token counts of a Responses `usage` for the log line, summed over n upstream answers."""
    if type(usage) is dict:
        record.input_tokens = _plus(record.input_tokens, usage.get("input_tokens"))
        record.output_tokens = _plus(record.output_tokens, usage.get("output_tokens"))


def _plus(total: int | None, value: object) -> int | None:
    return (total or 0) + value if isinstance(value, int) else total
