"""Soak: hundreds of concurrent streams through diglot for a bounded time, watching its memory.

Starts the benchmark's fake upstream and two diglot processes on 127.0.0.1 (one over a chat
upstream, one over a Responses upstream, so both translation directions and both passthroughs
run), each on its default configuration (SQLite store, info logs) with its state in a
temporary folder removed at the end, warms them up, drives --concurrency clients for --seconds,
then lets them idle. Some clients hang up mid-stream and some ask for whole answers. Prints
each diglot's resident memory (RSS) fresh, after warm-up, during the run and after it, every
error seen, whether memory came back to within --tolerance-mb of the warmed-up baseline (a leak
would not), and how much the default SQLite store wrote.

Run: python -m bench.soak [--seconds 180] [--concurrency 300]; exits 1 on errors or a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.plan import request_body
from bench.processes import Processes, diglot_argv, free_port, typed, wait_listening

# (diglot's upstream API, the client's path, the client's API): all four ways through diglot.
ROUTES = (
    ("chat", "/v1/responses", "responses"),
    ("chat", "/v1/chat/completions", "chat"),
    ("responses", "/v1/chat/completions", "chat"),
    ("responses", "/v1/responses", "responses"),
)
HANG_UP_SHARE = 0.05
WHOLE_SHARE = 0.1
_FINISHED = (b"event: response.completed", b"data: [DONE]")


@dataclass
class Tally:
    """What the clients saw."""

    streams: int = 0
    whole: int = 0
    hung_up: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        errors = sum(self.errors.values())
        return (
            f"{self.streams} streams, {self.whole} whole answers, "
            f"{self.hung_up} hung up on purpose, {errors} errors"
        )


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def one_request(
    session: aiohttp.ClientSession, url: str, body: bytes, mode: str, tally: Tally
) -> None:
    """One request; a wrong status, a stream without its end, or an exception is an error."""
    try:
        async with session.post(url, data=body) as resp:
            if resp.status != 200:
                text = (await resp.read())[:120].decode("utf-8", "replace")
                tally.errors[f"HTTP {resp.status}: {text}"] += 1
                return
            if mode == "hang up":
                await resp.content.readany()
                tally.hung_up += 1
                return  # leaving the block closes the connection mid-stream
            payload = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
        return
    if mode == "whole":
        tally.whole += 1
    elif any(marker in payload[-4096:] for marker in _FINISHED):
        tally.streams += 1
    else:
        tally.errors["stream ended without its terminal event"] += 1


async def client(
    session: aiohttp.ClientSession, ports: dict[str, int], stop: float, tally: Tally
) -> None:
    """Requests back to back on a random way through diglot until `stop` (monotonic)."""
    bodies = {
        (api, stream): orjson.dumps(request_body(api, stream))
        for api in ("chat", "responses")
        for stream in (False, True)
    }
    while time.monotonic() < stop:
        upstream, path, api = random.choice(ROUTES)
        roll = random.random()
        mode = (
            "hang up"
            if roll < HANG_UP_SHARE
            else "whole"
            if roll < WHOLE_SHARE + HANG_UP_SHARE
            else "stream"
        )
        body = bodies[(api, mode != "whole")]
        await one_request(session, f"http://127.0.0.1:{ports[upstream]}{path}", body, mode, tally)


async def drive(ports: dict[str, int], concurrency: int, seconds: float, tally: Tally) -> None:
    """`concurrency` clients for `seconds`; connections are closed when it returns."""
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session, ports, stop, tally) for _ in range(concurrency)))


async def active_streams(port: int) -> float:
    """diglot's own count of open client streams, from /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("diglot_active_streams{")
    )


async def soak(args: argparse.Namespace, pids: dict[str, int], ports: dict[str, int]) -> int:
    def memory(label: str) -> dict[str, float]:
        now = {api: rss_mb(pid) for api, pid in pids.items()}
        shown = ", ".join(f"diglot({api}) {mb:.1f} MB" for api, mb in now.items())
        print(f"{label:<28} RSS {shown}", flush=True)
        return now

    memory("fresh")
    warm = Tally()
    await drive(ports, args.concurrency, args.warmup, warm)
    await asyncio.sleep(args.idle)  # connections closed; let diglot finish its cleanup
    baseline = memory(f"after {args.warmup:g} s warm-up")
    tally = Tally()
    run = asyncio.create_task(drive(ports, args.concurrency, args.seconds, tally))
    peak = dict(baseline)
    started = time.monotonic()
    while not run.done():
        await asyncio.wait({run}, timeout=args.report_every)
        now = memory(f"during, {time.monotonic() - started:5.0f} s")
        peak = {api: max(peak[api], mb) for api, mb in now.items()}
        print(f"{'':<28} {tally.line()}", flush=True)
    await run
    await asyncio.sleep(args.idle)
    after = memory(f"after {args.idle:g} s idle")
    open_streams = {api: await active_streams(port) for api, port in ports.items()}
    print(f"\nclients: {tally.line()} (warm-up: {warm.line()})")
    for message, count in (warm.errors + tally.errors).most_common(10):
        print(f"  error x{count}: {message}")
    print(f"streams diglot still counts as open: {open_streams}")
    leaks = []
    for api in pids:
        grown = after[api] - baseline[api]
        verdict = "ok" if grown <= args.tolerance_mb else "NOT back"
        print(
            f"diglot({api}): baseline {baseline[api]:.1f} MB, peak {peak[api]:.1f} MB, "
            f"after {after[api]:.1f} MB ({grown:+.1f} MB): {verdict} "
            f"(tolerance {args.tolerance_mb:g} MB)"
        )
        if grown > args.tolerance_mb:
            leaks.append(api)
    errors = sum((warm.errors + tally.errors).values())
    clean = not leaks and not errors and not any(open_streams.values())
    print("memory returned to baseline" if not leaks else f"memory did NOT return: {leaks}")
    return 0 if clean else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180, help="length of the run")
    parser.add_argument("--concurrency", type=int, default=300, help="clients at once")
    parser.add_argument("--warmup", type=float, default=15, help="warm-up before the baseline")
    parser.add_argument("--idle", type=float, default=3, help="idle time before measuring")
    parser.add_argument("--event-gap-ms", type=float, default=40, help="upstream event spacing")
    parser.add_argument("--tolerance-mb", type=float, default=10, help="allowed RSS growth")
    parser.add_argument("--report-every", type=float, default=10, help="seconds between lines")
    return parser.parse_args(argv)


def stored_mb(procs: Processes, names: Sequence[str]) -> dict[str, float]:
    """Size of each diglot's default SQLite store (with its WAL), to show it was written."""
    sizes = {}
    for name in names:
        state = procs.state_home(name) / "diglot"
        files = state.glob("responses.db*") if state.is_dir() else ()
        sizes[name] = sum(path.stat().st_size for path in files) / 1e6
    return sizes


def start_stack(procs: Processes, event_gap_ms: float) -> tuple[dict[str, int], dict[str, int]]:
    """The fake upstream and a diglot over each API: their pids and ports by API."""
    upstream_port = free_port()
    upstream = procs.start(
        "upstream",
        [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port),
         "--event-gap-ms", str(event_gap_ms)],
        None,
    )  # fmt: skip
    if not wait_listening(upstream_port, upstream):
        raise RuntimeError("the fake upstream did not start:\n" + procs.log_tail("upstream"))
    pids, ports = {}, {}
    for api in ("chat", "responses"):
        port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        proc = procs.start_diglot(f"diglot-{api}", upstream_url, api, port, None)
        if not wait_listening(port, proc):
            raise RuntimeError(f"diglot ({api}) did not start:\n" + procs.log_tail(f"diglot-{api}"))
        print("started:", typed(diglot_argv(upstream_url, api, port)))
        pids[api], ports[api] = proc.pid, port
    return pids, ports


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diglot-soak-") as scratch:
        procs = Processes(Path(scratch))
        try:
            pids, ports = start_stack(procs, args.event_gap_ms)
            status = asyncio.run(soak(args, pids, ports))
            stored = stored_mb(procs, [f"diglot-{api}" for api in pids])
            print("SQLite store (default) on disk: " + ", ".join(
                f"{name} {mb:.2f} MB" for name, mb in stored.items()
            ))  # fmt: skip
            for line in procs.error_lines("diglot"):
                print("logged:", line)
                status = 1
            return status
        except RuntimeError as exc:
            print(exc)
            return 1
        finally:
            with contextlib.suppress(Exception):
                procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
