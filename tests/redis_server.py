"""A real redis-server for tests, on a free loopback port, started once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

_READY = "Ready to accept connections"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a private redis-server; skipped without one, except under CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)),
            *("--save", "", "--appendonly", "no", "--loglevel", "notice"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if _READY in line:
            break
    else:
        process.wait()
        pytest.fail("redis-server did not start:\n" + "".join(seen))
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """Database 0 of the session's redis-server, emptied for this test."""
    url = redis_server + "/0"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url
