"""diglot's benchmark: its default configuration's CPU and latency against a uvloop relay.

Run from the repository root: python -m bench [--quick] [--no-extra]   (or: python bench/run.py)
Throughput, latency and CPU per request, in one run, as ratios to a bare aiohttp relay on uvloop;
diglot runs exactly as `diglot --upstream URL --upstream-api API` (plus where to listen), its
state in the run's temporary folder. Extra rows, never judged, show it with EXTRA_FLAGS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.plan import (
    EXTRA_FLAGS,
    EXTRA_LABEL,
    PATHS,
    SOCKET_CLIENTS,
    Scenario,
    Target,
    request_body,
)
from bench.processes import (
    TICKS,
    Processes,
    cpu_seconds,
    diglot_argv,
    free_port,
    machine_busy_seconds,
    own_seconds,
    pinner,
    settle,
    typed,
    wait_listening,
)
from bench.replicas import measure_pairs, replicas_report, routed_targets, start_routed
from bench.report import (
    Results,
    Window,
    load_table,
    outside_load_note,
    summarise,
    unloaded_table,
    verdicts,
)
from bench.sockets import measure_sockets, socket_report

LUA = Path(__file__).resolve().parent / "post.lua"
WRK_MISSING = (
    "bench needs wrk, the HTTP load generator, and it is not on PATH.\n"
    "Install it with: sudo apt-get install -y wrk   (Debian/Ubuntu; elsewhere see "
    "https://github.com/wg/wrk)"
)


@dataclass(frozen=True)
class Settings:
    """How long and how hard to measure."""

    rounds: int
    seconds: int
    warmup: int
    unloaded_rounds: int  # one request at a time (c=1)
    unloaded_seconds: int
    event_gap_ms: float
    scenarios: tuple[Scenario, ...]
    cores: tuple[int | None, int | None]  # (proxies' CPU, load generator's and upstream's CPU)
    priority: bool  # raise every process of the run above other programs, where permitted
    extra: bool  # also measure diglot with EXTRA_FLAGS (not judged)


@dataclass
class Stack:
    """One fake upstream with a relay and the diglots in front of it."""

    upstream_pid: int
    targets: list[Target]
    relay_loop: str  # the relay's event loop class, as the relay itself reports it


def scenarios(quick: bool, gap_ms: float, connections: int) -> tuple[Scenario, ...]:
    """Non-stream, realistic spaced streams, and (unless quick) back-to-back streams."""
    spaced = Scenario(
        f"stream, events {gap_ms:g} ms apart", True, "spaced", max(1, connections // 2), False
    )
    chosen = [Scenario("non-stream", False, "burst", connections, True), spaced]
    if not quick:
        chosen.append(Scenario("stream, events back to back", True, "burst", connections, False))
    return tuple(chosen)


def start_stack(procs: Processes, settings: Settings, pacing: str) -> Stack:
    """The fake upstream, the relay and diglot for both upstream APIs; diglot may fail to start."""
    proxy_core, load_core = settings.cores
    gap = settings.event_gap_ms if pacing == "spaced" else 0.0
    upstream_port, relay_port = free_port(), free_port()
    upstream = procs.start(
        f"upstream-{pacing}",
        [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port),
         "--event-gap-ms", str(gap)],
        load_core,
    )  # fmt: skip
    if not wait_listening(upstream_port, upstream):
        raise RuntimeError(
            "the fake upstream did not start:\n" + procs.log_tail(f"upstream-{pacing}")
        )
    relay = procs.start(
        f"relay-{pacing}",
        [sys.executable, "-m", "bench.relay", "--upstream", f"http://127.0.0.1:{upstream_port}",
         "--port", str(relay_port)],
        proxy_core,
    )  # fmt: skip
    if not wait_listening(relay_port, relay):
        raise RuntimeError("the relay did not start:\n" + procs.log_tail(f"relay-{pacing}"))
    targets = [
        Target(f"direct ({api})", "direct", api, api, upstream_port, upstream.pid) for api in PATHS
    ]
    targets += [Target(f"relay ({api})", "relay", api, api, relay_port, relay.pid) for api in PATHS]
    for extra in (False, True) if settings.extra else (False,):
        for api in PATHS:
            targets += start_diglot(procs, settings, pacing, api, upstream_port, extra)
    relay_says = procs.log_tail(f"relay-{pacing}", 1).strip()
    return Stack(upstream.pid, targets, relay_says.removeprefix("relay: "))


def start_diglot(
    procs: Processes, settings: Settings, pacing: str, api: str, upstream_port: int, extra: bool
) -> list[Target]:
    """One diglot over an `api` upstream, as a user starts it (plus EXTRA_FLAGS if `extra`)."""
    port = free_port()
    name = f"diglot-{api}-{pacing}{'-extra' if extra else ''}"
    proc = procs.start_diglot(
        name,
        f"http://127.0.0.1:{upstream_port}/v1",
        api,
        port,
        settings.cores[0],
        EXTRA_FLAGS if extra else (),
    )
    other = "responses" if api == "chat" else "chat"
    suffix = f" ({EXTRA_LABEL})" if extra else ""
    mine = [
        Target(f"diglot passthrough {api}->{api}{suffix}", "passthrough", api, api, port,
               proc.pid, extra=extra),
        Target(f"diglot translating {other}->{api}{suffix}", "translating", other, api, port,
               proc.pid, extra=extra),
    ]  # fmt: skip
    if not wait_listening(port, proc):
        why = f"diglot --upstream-api {api} did not start"
        print(f"{why}:\n{procs.log_tail(name)}", flush=True)
        for target in mine:
            target.skip.update((s.name, why) for s in settings.scenarios)
    return mine


def probe(target: Target, body: bytes, stream: bool) -> str | None:
    """One request before measuring: None when the answer looks right, else why not."""
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        conn.request("POST", target.path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
    except OSError as exc:
        return f"request failed: {exc}"
    finally:
        conn.close()
    if response.status != 200:
        return f"answered {response.status}: {error_message(payload)}"
    if not stream:
        return None if payload.startswith(b"{") else "answer is not a JSON object"
    data = [line for line in payload.split(b"\n") if line.startswith(b"data:")]
    if target.client_api == "chat" and (len(data) < 2 or data[-1] != b"data: [DONE]"):
        return "chat stream without a final [DONE]"
    if target.client_api == "responses" and b"event: response.completed" not in payload:
        return "Responses stream without response.completed"
    return None


def error_message(payload: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body's start."""
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(payload)["error"]["message"])[:160]
    return payload[:160].decode(errors="replace")


def run_wrk(
    target: Target, body_file: Path, seconds: int, connections: int, cpu: int | None
) -> dict[str, Any]:
    """One wrk run (one thread) POSTing `body_file`; its result line as a dict."""
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(LUA), f"http://127.0.0.1:{target.port}{target.path}",
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        capture_output=True,
        env={**os.environ, "BENCH_BODY": str(body_file)},
        timeout=seconds + 30,
        preexec_fn=pinner(cpu),
        check=False,
    )
    for line in done.stdout.decode(errors="replace").splitlines():
        if line.startswith("BENCH_RESULT "):
            return dict(json.loads(line.removeprefix("BENCH_RESULT ")))
    raise RuntimeError(f"wrk gave no result: {done.stdout[-300:]!r} {done.stderr[-300:]!r}")


def measure(
    target: Target, body_file: Path, seconds: int, connections: int, upstream_pid: int,
    cpu: int | None,
) -> Window:  # fmt: skip
    """One window: wrk's counts and percentiles, and the CPU spent meanwhile by each party."""
    pids = sorted({target.pid, upstream_pid})
    settle(pids)
    before = [cpu_seconds(pid) for pid in (target.pid, upstream_pid)]
    accounted_before = sum(cpu_seconds(pid) for pid in pids) + own_seconds()
    machine_before, wall_before = machine_busy_seconds(), time.monotonic()
    result = run_wrk(target, body_file, seconds, connections, cpu)
    settle(pids)
    machine = machine_busy_seconds() - machine_before
    wall = time.monotonic() - wall_before
    accounted = sum(cpu_seconds(pid) for pid in pids) + own_seconds() - accounted_before
    return Window(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cpu_s=cpu_seconds(target.pid) - before[0],
        upstream_cpu_s=cpu_seconds(upstream_pid) - before[1],
        outside_share=max(0.0, machine - accounted) / wall,
        errors=sum(result[key] for key in ("connect", "read", "write", "status", "timeout")),
    )


def rotations(items: Sequence[Target], rounds: int) -> Iterator[list[Target]]:
    """Round-robin order, starting one further each round so no target always goes first."""
    for number in range(rounds):
        shift = number % len(items) if items else 0
        yield [*items[shift:], *items[:shift]]


def run_scenario(
    scenario: Scenario, stack: Stack, settings: Settings, body_files: dict[tuple[str, bool], Path]
) -> tuple[Results, Results]:
    """Probe, warm up, then measure every live target in alternating rounds; loaded and unloaded."""
    load_core = settings.cores[1]
    for target in stack.targets:
        if scenario.name not in target.skip:
            payload = body_files[target.client_api, scenario.stream].read_bytes()
            problem = probe(target, payload, scenario.stream)
            if problem:
                target.skip[scenario.name] = problem
    live = [t for t in stack.targets if scenario.name not in t.skip]

    def body_of(target: Target) -> Path:
        return body_files[target.client_api, scenario.stream]

    print(f"{scenario.name}: warm-up", flush=True)
    for target in live:
        run_wrk(target, body_of(target), settings.warmup, scenario.connections, load_core)
    loaded: dict[str, list[Window]] = {t.name: [] for t in live}
    for number, order in enumerate(rotations(live, settings.rounds), 1):
        print(f"{scenario.name}: round {number}/{settings.rounds}", flush=True)
        for target in order:
            loaded[target.name].append(
                measure(target, body_of(target), settings.seconds, scenario.connections,
                        stack.upstream_pid, load_core)
            )  # fmt: skip
    quiet: dict[str, list[Window]] = {t.name: [] for t in live} if scenario.unloaded else {}
    if scenario.unloaded:
        print(f"{scenario.name}: one request at a time", flush=True)
        for order in rotations(live, settings.unloaded_rounds):
            for target in order:
                quiet[target.name].append(
                    measure(target, body_of(target), settings.unloaded_seconds, 1,
                            stack.upstream_pid, load_core)
                )  # fmt: skip
    return (
        {name: summarise(w) for name, w in loaded.items()},
        {name: summarise(w) for name, w in quiet.items()},
    )


PRIORITY_BOOST = 10


def raise_priority() -> str:
    """Lower this runner's nice value, inherited by every process it starts, when permitted."""
    try:
        os.nice(-PRIORITY_BOOST)
    except PermissionError:
        return "normal (raising it needs root or CAP_SYS_NICE)"
    return f"nice -{PRIORITY_BOOST}, so that other programs disturb the measurement less"


def version(package: str) -> str:
    """An installed distribution's version, or "?"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def wrk_version() -> str:
    """`wrk -v`'s first line, without the copyright."""
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, check=False)
    first = (wrk.stdout or wrk.stderr).decode(errors="replace").strip().splitlines()[0]
    return first.split(" Copyright")[0]


def header(settings: Settings, nproc: int, priority: str) -> list[str]:
    """What ran where and when: machine, versions, command lines, pinning, durations, method."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    proxy_core, load_core = settings.cores
    pinning = (
        "none (fewer than 2 CPUs or --no-pin)"
        if proxy_core is None
        else f"relay and diglot on CPU {proxy_core}; wrk (1 thread), fake upstream and runner "
        f"on CPU {load_core}"
    )
    command = typed(
        diglot_argv("http://127.0.0.1:<upstream port>/v1", "<chat|responses>", "<port>")
    )
    extra = (
        f"extra rows, not judged ({EXTRA_LABEL}): the same plus {' '.join(EXTRA_FLAGS)}"
        if settings.extra
        else "extra rows: none (--no-extra)"
    )
    return [
        f"diglot benchmark, {now}",
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs ({nproc} usable), "
        f"Linux {platform.release()}",
        f"software: diglot {version('diglot')}, Python {platform.python_version()}, "
        f"aiohttp {version('aiohttp')}, uvloop {version('uvloop')}, {wrk_version()}",
        f"diglot (its default configuration, judged): {command}",
        "  with no DIGLOT_* variable and no STATE_DIRECTORY; XDG_STATE_HOME is a per-run temporary "
        "folder, so its state (the SQLite store, the seal key) goes there and is removed after the "
        "run; its info logs (JSON lines) go to a file",
        extra,
        "relay (the floor): python -m bench.relay, aiohttp on uvloop, no logs",
        f"pinning: {pinning}",
        f"priority: {priority}",
        f"method: per scenario, every target in turn, {settings.rounds} rounds x "
        f"{settings.seconds} s, order rotated each round, after a {settings.warmup} s warm-up; "
        f"one request at a time (c=1, non-stream): {settings.unloaded_rounds} rounds x "
        f"{settings.unloaded_seconds} s",
        "requests: a small Responses or Chat request (instructions, question, one function tool;"
        " Responses leaves `store` to its default, so translated responses are stored); streams"
        " answer 100 SSE events, one socket write each",
        "CPU/request: utime+stime of the serving process, all threads (/proc/<pid>/stat, "
        f"1/{TICKS} s ticks) across each window, once idle again, / completed requests",
        "ratios: to the bare relay serving the same client API, in this run; the CPU "
        "ratio is the median of the rounds' ratios",
    ]


def bench(settings: Settings, procs: Processes, body_files: dict[tuple[str, bool], Path]) -> None:
    """Start everything, measure every scenario, print the report."""
    stacks = {
        pacing: start_stack(procs, settings, pacing)
        for pacing in dict.fromkeys(s.pacing for s in settings.scenarios)
    }
    loaded: dict[str, Results] = {}
    unloaded: dict[str, Results] = {}
    for scenario in settings.scenarios:
        loaded[scenario.name], unloaded[scenario.name] = run_scenario(
            scenario, stacks[scenario.pacing], settings, body_files
        )
    loops = sorted({stack.relay_loop for stack in stacks.values()})
    lines = ["", f"event loop: relay {', '.join(loops)}; diglot {diglot_loops(procs)}"]
    for scenario in settings.scenarios:
        lines += load_table(scenario, stacks[scenario.pacing].targets, loaded[scenario.name])
    lines.append(
        "(busy: the serving process's share of one CPU; upstr: the fake upstream's; other: "
        "programs outside this run. A saturated server reads several events per wakeup, which "
        "lowers its stream CPU/request.)"
    )
    lines += outside_load_note(loaded)
    quiet = [s for s in settings.scenarios if s.unloaded]
    lines += unloaded_table(quiet, stacks["burst"].targets, unloaded)
    by_scenario = {s.name: stacks[s.pacing].targets for s in settings.scenarios}
    lines += verdicts(settings.scenarios, by_scenario, loaded, unloaded)
    lines += socket_phase(stacks["burst"], settings)
    lines += replica_phase(stacks["burst"], settings, procs, body_files)
    lines += logged_errors(procs)
    print("\n".join(lines), flush=True)


def socket_phase(stack: Stack, settings: Settings) -> list[str]:
    """WebSocket turns against SSE ones, on the Responses-over-chat diglot of the default run."""
    target = next(
        t
        for t in stack.targets
        if t.kind == "translating" and t.client_api == "responses" and not t.extra
    )
    if target.skip:
        return ["", f"WebSocket phase: not measured ({next(iter(target.skip.values()))})"]
    print("WebSocket phase", flush=True)
    result = measure_sockets(target, settings.rounds, settings.seconds, SOCKET_CLIENTS)
    return socket_report(target, result, SOCKET_CLIENTS)


def replica_phase(
    stack: Stack, settings: Settings, procs: Processes, body_files: dict[tuple[str, bool], Path]
) -> list[str]:
    """Routing over two replicas against a one-upstream diglot started with it (non-stream):
    the run's own has served every earlier phase, and two processes of different ages differ
    by more than routing costs."""
    print("Replicas phase", flush=True)
    upstream = next(t for t in stack.targets if t.kind == "direct")
    baseline = start_diglot(procs, settings, "replicas", "chat", upstream.port, extra=False)
    skipped = [why for t in baseline for why in t.skip.values()]
    if skipped:
        return ["", f"Replicas phase: not measured ({skipped[0]})"]
    port, pid = start_routed(procs, upstream.port, settings.cores)
    connections = next(s.connections for s in settings.scenarios if not s.stream)

    def run(target: Target, body: Path) -> Window:
        return measure(target, body, settings.seconds, connections, stack.upstream_pid,
                       settings.cores[1])  # fmt: skip

    bodies = {api: body_files[api, False] for api in PATHS}
    routed = routed_targets(baseline, port, pid)
    return replicas_report(measure_pairs(baseline, routed, bodies, settings.rounds, run))


def diglot_loops(procs: Processes) -> str:
    """The event loops diglot logged when it began serving, as far as its logs say."""
    loops = {str(line.get("loop", "?")) for line in procs.logged_events("diglot-", "serving")}
    return ", ".join(sorted(loops)) or "?"


def logged_errors(procs: Processes) -> list[str]:
    """diglot's logged errors during the run: a client that hangs up must not cause one."""
    found = procs.error_lines("diglot-")
    if not found:
        return ["", "diglot logged no errors during the run"]
    first = found[0] if len(found[0]) <= 300 else found[0][:300] + "..."
    return ["", f"diglot logged {len(found)} error lines during the run; the first:", f"  {first}"]


def write_bodies(folder: Path) -> dict[tuple[str, bool], Path]:
    """The four request bodies wrk sends, as files for post.lua."""
    files = {}
    for api in PATHS:
        for stream in (False, True):
            path = folder / f"{api}-{'stream' if stream else 'plain'}.json"
            path.write_bytes(json.dumps(request_body(api, stream)).encode())
            files[api, stream] = path
    return files


def parse_args(argv: Sequence[str] | None) -> Settings:
    """Settings from the command line; --quick gives about two minutes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~2 minutes)")
    parser.add_argument(
        "--rounds", type=int, help="measured rounds per target (default 4, quick 2)"
    )
    parser.add_argument("--seconds", type=int, default=1, help="seconds per measured window")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--event-gap-ms", type=float, default=1.0, help="spaced streams' pacing")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--no-priority", action="store_true", help="do not raise the run's CPU priority"
    )
    parser.add_argument(
        "--no-extra",
        action="store_true",
        help=f"measure only the default configuration, not the rows with {' '.join(EXTRA_FLAGS)}",
    )
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and len(cpus) >= 2
    return Settings(
        rounds=args.rounds or (2 if args.quick else 4),
        seconds=args.seconds,
        warmup=1,
        unloaded_rounds=2 if args.quick else 3,
        unloaded_seconds=1 if args.quick else 2,
        event_gap_ms=args.event_gap_ms,
        scenarios=scenarios(args.quick, args.event_gap_ms, args.connections),
        cores=(cpus[0], cpus[1]) if pinned else (None, None),
        priority=not args.no_priority,
        extra=not args.no_extra,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The whole benchmark: 0 when it ran (whatever the verdicts), 1 on failure, 2 without wrk."""
    settings = parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    nproc = len(os.sched_getaffinity(0))
    if settings.cores[1] is not None:
        os.sched_setaffinity(0, {settings.cores[1]})
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    started = time.monotonic()
    priority = raise_priority() if settings.priority else "normal (--no-priority)"
    print("\n".join(header(settings, nproc, priority)), flush=True)
    with tempfile.TemporaryDirectory(prefix="diglot-bench-") as scratch:
        procs = Processes(Path(scratch))
        try:
            bench(settings, procs, write_bodies(Path(scratch)))
        except KeyboardInterrupt:
            print("\ninterrupted; stopping every process this run started", file=sys.stderr)
            return 130
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"\nbench failed: {exc}", file=sys.stderr)
            return 1
        finally:
            procs.stop_all()
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
