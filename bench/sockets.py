"""The WebSocket phase: a streamed turn's CPU over WebSocket against the same turn over SSE.

Both are driven by the same client (aiohttp, in this runner, on the load generator's CPU), so
the two sides differ only in the transport: `connections` clients each run turns one after the
other, as an agent does, for a window; diglot's CPU per turn is compared round by round.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from bench.plan import SOCKET_CPU_LIMIT, Target, request_body
from bench.processes import cpu_seconds, settle

Turns = Callable[[aiohttp.ClientSession, str, float], Awaitable[int]]


@dataclass(frozen=True)
class SocketResult:
    """CPU ms per turn of each transport, round by round."""

    sse_ms: tuple[float, ...]
    socket_ms: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """The median of the rounds' WebSocket-to-SSE ratios."""
        return statistics.median(w / s for w, s in zip(self.socket_ms, self.sse_ms, strict=True))


async def _sse_turns(session: aiohttp.ClientSession, url: str, until: float) -> int:
    """Streamed POSTs one after the other until `until`; how many finished."""
    body = json.dumps(request_body("responses", True)).encode()
    headers = {"Content-Type": "application/json"}
    done = 0
    while time.monotonic() < until:
        async with session.post(url, data=body, headers=headers) as answer:
            await answer.read()
        done += 1
    return done


async def _socket_turns(session: aiohttp.ClientSession, url: str, until: float) -> int:
    """`response.create` frames on one connection, each after the last one's terminal event."""
    frame = {"type": "response.create", **request_body("responses", False)}
    del frame["stream"]
    done = 0
    async with session.ws_connect(url, max_msg_size=0) as ws:
        while time.monotonic() < until:
            await ws.send_json(frame)
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"the WebSocket ended mid-turn: {message}")
                if '"type":"response.completed"' in message.data:
                    break
            done += 1
    return done


async def _window(turns: Turns, url: str, connections: int, seconds: float) -> int:
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        counts = await asyncio.gather(*(turns(session, url, until) for _ in range(connections)))
    return sum(counts)


def _cpu_ms_per_turn(
    target: Target, turns: Turns, url: str, connections: int, seconds: float
) -> float:
    settle([target.pid])
    before = cpu_seconds(target.pid)
    count = asyncio.run(_window(turns, url, connections, seconds))
    settle([target.pid])
    return 1000 * (cpu_seconds(target.pid) - before) / max(count, 1)


def measure_sockets(target: Target, rounds: int, seconds: float, connections: int) -> SocketResult:
    """Alternating windows of SSE and WebSocket turns against one translating diglot."""
    base = f"127.0.0.1:{target.port}{target.path}"
    sse: list[float] = []
    socket: list[float] = []
    _cpu_ms_per_turn(target, _socket_turns, f"ws://{base}", connections, 1)  # warm-up
    for number in range(rounds):
        order = [(sse, _sse_turns, f"http://{base}"), (socket, _socket_turns, f"ws://{base}")]
        for kept, turns, url in order if number % 2 == 0 else order[::-1]:
            kept.append(_cpu_ms_per_turn(target, turns, url, connections, seconds))
    return SocketResult(tuple(sse), tuple(socket))


def socket_report(target: Target, result: SocketResult, connections: int) -> list[str]:
    """The phase's table and verdict."""
    ratio = result.ratio
    verdict = "PASS" if ratio <= SOCKET_CPU_LIMIT else "FAIL"
    return [
        "",
        f"WebSocket phase: {target.name}, a 100-event streamed turn, {connections} clients "
        "each running turns back to back (the same aiohttp client for both transports)",
        f"  SSE        {statistics.median(result.sse_ms):.3f} ms CPU/turn "
        f"(rounds {', '.join(f'{v:.3f}' for v in result.sse_ms)})",
        f"  WebSocket  {statistics.median(result.socket_ms):.3f} ms CPU/turn "
        f"(rounds {', '.join(f'{v:.3f}' for v in result.socket_ms)})",
        f"{verdict}  WebSocket/SSE CPU per turn {ratio:.2f}x (limit {SOCKET_CPU_LIMIT:.2f}x)",
    ]
