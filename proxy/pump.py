"""An upstream stream's bytes pumped through a translating relay, whatever the direction."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

import aiohttp

Pieces = list[dict[str, Any]]


class Relay(Protocol):
    """A translator fed with raw upstream bytes; `closed` once its terminal piece is out."""

    closed: bool

    def data(self, data: bytes) -> Pieces: ...

    def end(self) -> Pieces: ...

    def fail(self, message: str, kind: str) -> Pieces: ...


async def translated(
    upstream: aiohttp.ClientResponse, relay: Relay
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
