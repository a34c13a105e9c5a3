"""Reading client bodies: Content-Encoding gzip/deflate/zstd, streamed, under a size limit."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import IO, cast

import aiohttp
import zstandard
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from diglot.translators.errors import RequestError

_STEP = 64 * 1024
Sink = Callable[[bytes], None]


def too_large(limit: int) -> RequestError:
    """The 413 a client gets for a body above --max-body-bytes (after decompression)."""
    return RequestError(
        f"Request body exceeds the limit of {limit} bytes.",
        code="request_too_large",
        status=413,
    )


class _Collector:
    """The end of the chain: keeps the decoded body, refusing it past the limit."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def __call__(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.parts.append(piece)


class _Zlib:
    """gzip or deflate (zlib-wrapped or raw), inflated in bounded steps so bombs cost no memory."""

    __slots__ = ("_decoder", "_head", "_out", "_wbits")

    def __init__(self, out: Sink, wbits: int | None) -> None:
        self._out = out
        self._wbits = wbits
        self._head = b""
        self._decoder: zlib._Decompress | None = None

    def write(self, data: bytes) -> None:
        if self._decoder is None:
            data = self._head + data
            if self._wbits is None and len(data) < 2:
                self._head = data
                return
            wbits = self._wbits if self._wbits is not None else _deflate_wbits(data)
            self._decoder = zlib.decompressobj(wbits)
        while data:
            piece = self._decoder.decompress(data, _STEP)
            if piece:
                self._out(piece)
            data = self._decoder.unconsumed_tail

    def close(self) -> None:
        if self._decoder is None or not self._decoder.eof:
            raise zlib.error("truncated stream")
        rest = self._decoder.flush()
        if rest:
            self._out(rest)


def _deflate_wbits(head: bytes) -> int:
    """HTTP `deflate` is meant to be zlib-wrapped, but some clients send raw deflate."""
    is_zlib = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    return zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS


class _SinkFile:
    """What zstandard's stream writer writes its bounded output pieces to."""

    __slots__ = ("_out",)

    def __init__(self, out: Sink) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out(bytes(data))
        return len(data)


class _Zstd:
    __slots__ = ("_writer",)

    def __init__(self, out: Sink) -> None:
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            cast(IO[bytes], _SinkFile(out)), write_size=_STEP
        )

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        self._writer.flush()  # type: ignore[no-untyped-call]


_Decoder = _Zlib | _Zstd


def _decoder(encoding: str, out: Sink) -> _Decoder:
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(out, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Zlib(out, None)
    if encoding == "zstd":
        return _Zstd(out)
    raise RequestError(
        f"Unsupported Content-Encoding {encoding!r}; use gzip, deflate or zstd.",
        code="unsupported_content_encoding",
        status=415,
    )


def content_encodings(header: str) -> list[str]:
    """The codings applied to a body, in the order they were applied (identity left out)."""
    codings = (part.strip().lower() for part in header.split(","))
    return [coding for coding in codings if coding and coding != "identity"]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, decoded, never holding more than `limit` decoded bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    header = request.headers.get("Content-Encoding")
    encodings = content_encodings(header) if header else []
    if length is not None and not encodings:
        return await _read_exactly(request, length)
    collector = _Collector(limit)
    sink: Sink = collector
    decoders: list[_Decoder] = []
    for encoding in encodings:
        decoder = _decoder(encoding, sink)
        decoders.append(decoder)
        sink = decoder.write
    raw = 0
    try:
        async for chunk in request.content.iter_any():
            raw += len(chunk)
            if raw > limit:
                raise too_large(limit)
            sink(chunk)
        for decoder in reversed(decoders):
            decoder.close()
    except (zlib.error, zstandard.ZstdError) as exc:
        raise RequestError(
            f"The request body could not be decoded as {', '.join(encodings)}: {exc}",
            code="invalid_body_encoding",
        ) from None
    except (ConnectionError, aiohttp.ClientError, HttpProcessingError):
        raise _unread() from None
    return b"".join(collector.parts)


async def _read_exactly(request: web.Request, length: int) -> bytes:
    """The common case, a plain body of declared length, read in one call."""
    try:
        return await request.content.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError, aiohttp.ClientError, HttpProcessingError):
        raise _unread() from None


def _unread() -> RequestError:
    return RequestError("The request body could not be read to its end.")
