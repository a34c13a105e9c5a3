"""Compressed request bodies (gzip, deflate, zstd) and the decoded-size limit."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from typing import TYPE_CHECKING

import orjson
import pytest
import zstandard

from fixtures.fake_chat_upstream import FakeUpstream, Reply, completion

if TYPE_CHECKING:
    from tests.conftest import MakeProxy

BODY = orjson.dumps(
    {"model": "fake-model", "messages": [{"role": "user", "content": "compress me " * 200}]}
)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", raw_deflate(BODY)),
        ("zstd", zstandard.ZstdCompressor().compress(BODY)),
        ("ZSTD", zstandard.ZstdCompressor(write_content_size=False).compress(BODY)),
        ("gzip, zstd", zstandard.ZstdCompressor().compress(gzip.compress(BODY))),
        ("identity", BODY),
    ],
)
async def test_encoded_bodies_reach_the_upstream_decoded(
    make_proxy: MakeProxy, fake: FakeUpstream, encoding: str, encoded: bytes
) -> None:
    fake.script(Reply(completion("ok")))
    client = await make_proxy("chat")
    resp = await client.post(
        "/v1/chat/completions", data=encoded, headers={"Content-Encoding": encoding}
    )
    assert resp.status == 200
    assert fake.last.body == BODY
    assert "Content-Encoding" not in fake.last.headers


def too_large(limit: int) -> dict[str, object]:
    return {
        "error": {
            "message": f"Request body exceeds the limit of {limit} bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "zstd"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_limit_is_413(
    make_proxy: MakeProxy, fake: FakeUpstream, encoding: str, chunked: bool
) -> None:
    limit = 1000
    body = b'{"model":"m","input":"' + b"a" * limit + b'"}'
    encoded = body if encoding == "identity" else ENCODERS[encoding](body)
    client = await make_proxy("responses", max_body_bytes=limit)

    async def stream() -> object:
        yield encoded

    data = stream() if chunked else encoded
    resp = await client.post("/v1/responses", data=data, headers={"Content-Encoding": encoding})
    assert resp.status == 413
    assert await resp.json() == too_large(limit)
    assert fake.received == []


async def test_body_at_the_limit_is_accepted(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    fake.script(Reply(completion("ok")))
    client = await make_proxy("chat", max_body_bytes=len(BODY))
    resp = await client.post(
        "/v1/chat/completions", data=gzip.compress(BODY), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status == 200
    assert fake.last.body == BODY


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
async def test_decompression_bomb_costs_no_memory(
    make_proxy: MakeProxy, fake: FakeUpstream, encoding: str
) -> None:
    bomb = ENCODERS[encoding](b"\0" * (64 * 1024 * 1024))
    client = await make_proxy("chat", max_body_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        resp = await client.post(
            "/v1/chat/completions", data=bomb, headers={"Content-Encoding": encoding}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 413
    assert peak < 16 * 1024 * 1024
    assert fake.received == []


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"this is not gzip"),
        ("gzip", gzip.compress(BODY)[:-20]),
        ("deflate", b"\x78\x9c garbage"),
        ("zstd", b"not zstd at all"),
    ],
)
async def test_undecodable_body_is_400(
    make_proxy: MakeProxy, fake: FakeUpstream, encoding: str, data: bytes
) -> None:
    client = await make_proxy("chat")
    resp = await client.post(
        "/v1/chat/completions", data=data, headers={"Content-Encoding": encoding}
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_body_encoding"
    assert error["message"].startswith(f"The request body could not be decoded as {encoding}")
    assert fake.received == []


async def test_unknown_encoding_is_415(make_proxy: MakeProxy, fake: FakeUpstream) -> None:
    client = await make_proxy("chat")
    resp = await client.post("/v1/chat/completions", data=BODY, headers={"Content-Encoding": "br"})
    assert resp.status == 415
    assert await resp.json() == {
        "error": {
            "message": "Unsupported Content-Encoding 'br'; use gzip, deflate or zstd.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unsupported_content_encoding",
        }
    }
    assert fake.received == []
