"""The replicas phase: what routing costs. diglot with one [[upstreams]] table of two replicas
(every request routed: its model matched, a replica picked, the least busy one) against a
one-upstream diglot started with it, which does no routing at all; CPU per request, round by
round, non-stream, for both directions over a chat upstream.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.plan import Target
from bench.processes import Processes, diglot_env, free_port, wait_listening
from bench.report import Window

# Routing must cost nothing measurable: within the noise between rounds of the same target.
ROUTED_CPU_LIMIT = 1.1
NAME = "diglot-replicas"


@dataclass(frozen=True)
class Pair:
    """One direction: the one-upstream diglot and the routing one, CPU ms per request by round."""

    name: str
    one_upstream_ms: tuple[float, ...]
    routed_ms: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """The median of the rounds' routed-to-one-upstream ratios."""
        pairs = zip(self.routed_ms, self.one_upstream_ms, strict=True)
        return statistics.median(routed / one for routed, one in pairs)


def replicas_toml(upstream_ports: Sequence[int]) -> str:
    """Two replicas of one chat upstream, for every model."""
    urls = ", ".join(f'"http://127.0.0.1:{port}/v1"' for port in upstream_ports)
    return f'[[upstreams]]\nname = "replicas"\nurls = [{urls}]\napi = "chat"\nmodels = ["*"]\n'


def start_routed(
    procs: Processes, upstream_port: int, cpus: tuple[int | None, int | None]
) -> tuple[int, int]:
    """A second fake upstream, and diglot over both as replicas (pinned as the other diglots
    are); its port and pid. RuntimeError when either does not start."""
    proxy_core, load_core = cpus
    second = free_port()
    upstream = procs.start(
        "upstream-replica",
        [sys.executable, "-m", "bench.upstream", "--port", str(second), "--event-gap-ms", "0"],
        load_core,
    )
    if not wait_listening(second, upstream):
        raise RuntimeError("the second fake upstream did not start")
    state = procs.state_home(NAME)
    state.mkdir(parents=True, exist_ok=True)
    config = state / "diglot.toml"
    config.write_text(replicas_toml([upstream_port, second]))
    port = free_port()
    argv = [sys.executable, "-m", "diglot", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    proc = procs.start(NAME, argv, proxy_core, diglot_env(state))
    if not wait_listening(port, proc):
        raise RuntimeError(f"diglot over two replicas did not start:\n{procs.log_tail(NAME)}")
    return port, proc.pid


def routed_targets(baseline: Sequence[Target], port: int, pid: int) -> list[Target]:
    """The routing diglot as the same kinds of target as the one-upstream ones."""
    return [
        Target(t.name + " (2 replicas)", t.kind, t.client_api, t.upstream_api, port, pid)
        for t in baseline
    ]


def measure_pairs(
    baseline: Sequence[Target],
    routed: Sequence[Target],
    bodies: Mapping[str, Path],
    rounds: int,
    run: Callable[[Target, Path], Window],
) -> list[Pair]:
    """Alternating windows of each one-upstream target and its routing twin, both warmed up."""
    pairs = []
    for one, twin in zip(baseline, routed, strict=True):
        body = bodies[one.client_api]
        run(one, body)
        run(twin, body)
        kept: dict[str, list[float]] = {one.name: [], twin.name: []}
        for number in range(rounds):
            order = (one, twin) if number % 2 == 0 else (twin, one)
            for target in order:
                window = run(target, body)
                kept[target.name].append(1000 * window.cpu_s / max(window.requests, 1))
        pairs.append(Pair(one.name, tuple(kept[one.name]), tuple(kept[twin.name])))
    return pairs


def replicas_report(pairs: Sequence[Pair]) -> list[str]:
    """The phase's table and verdicts."""
    lines = [
        "",
        "Replicas phase: one [[upstreams]] table with two replicas (every request routed to the "
        "least busy) against a diglot with --upstream started with it, non-stream, CPU ms per "
        "request",
    ]
    for pair in pairs:
        one = ", ".join(f"{value:.3f}" for value in pair.one_upstream_ms)
        routed = ", ".join(f"{value:.3f}" for value in pair.routed_ms)
        lines += [
            f"  {pair.name}",
            f"    one upstream  {statistics.median(pair.one_upstream_ms):.3f} (rounds {one})",
            f"    2 replicas    {statistics.median(pair.routed_ms):.3f} (rounds {routed})",
        ]
    for pair in pairs:
        verdict = "PASS" if pair.ratio <= ROUTED_CPU_LIMIT else "FAIL"
        lines.append(
            f"{verdict}  {pair.name}, routed over 2 replicas: CPU/request {pair.ratio:.2f}x "
            f"one upstream (limit {ROUTED_CPU_LIMIT:.2f}x)"
        )
    return lines
