"""Turning measured windows into the printed tables, ratios and PASS/FAIL lines."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.plan import ADDED_LATENCY_LIMITS_MS, CPU_LIMITS, Scenario, Target

Results = dict[str, "Summary"]  # target name -> summary, for one scenario


@dataclass(frozen=True)
class Window:
    """One measured wrk run."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_s: float
    upstream_cpu_s: float
    outside_share: float  # CPUs' worth that programs outside this benchmark used meanwhile
    errors: int


@dataclass(frozen=True)
class Summary:
    """A target's rounds in one scenario, folded together."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    cpu_busy: float
    upstream_busy: float
    outside_busy: float
    errors: int
    cpu_ms_per_round: tuple[float, ...]


def summarise(windows: Sequence[Window]) -> Summary:
    """Requests and CPU are summed over rounds; latency percentiles are the rounds' medians."""
    requests = sum(w.requests for w in windows)
    seconds = sum(w.seconds for w in windows) or math.nan
    cpu = sum(w.cpu_s for w in windows)
    return Summary(
        rps=requests / seconds,
        p50_ms=statistics.median(w.p50_ms for w in windows),
        p99_ms=statistics.median(w.p99_ms for w in windows),
        cpu_ms_per_request=1000 * cpu / requests if requests else math.nan,
        cpu_busy=cpu / seconds,
        upstream_busy=sum(w.upstream_cpu_s for w in windows) / seconds,
        outside_busy=statistics.mean(w.outside_share for w in windows),
        errors=sum(w.errors for w in windows),
        cpu_ms_per_round=tuple(
            1000 * w.cpu_s / w.requests if w.requests else math.nan for w in windows
        ),
    )


def reference(targets: Sequence[Target], kind: str, api: str) -> Target | None:
    """The direct or relay target serving `api`."""
    return next((t for t in targets if t.kind == kind and t.client_api == api), None)


def round_ratios(mine: Summary, base: Summary) -> list[float]:
    """CPU per request over the relay's, round by round."""
    pairs = zip(mine.cpu_ms_per_round, base.cpu_ms_per_round, strict=True)
    return [a / b for a, b in pairs]


def relay_ratios(
    targets: Sequence[Target], results: Results, target: Target
) -> tuple[float, float, float] | None:
    """CPU/request, p50 and req/s of `target` over the relay's serving the same client API.

    The CPU ratio is the median of the rounds' ratios: each round's windows ran close together,
    so a burst of outside load hitting one window does not skew the result.
    """
    relay = reference(targets, "relay", target.client_api)
    if relay is None or relay.name not in results or target.name not in results:
        return None
    mine, base = results[target.name], results[relay.name]
    return (
        statistics.median(round_ratios(mine, base)),
        mine.p50_ms / base.p50_ms,
        mine.rps / base.rps,
    )


def added_latency(
    targets: Sequence[Target], results: Results, target: Target, percentile: str
) -> float | None:
    """A percentile ("p50" or "p99") through `target` minus the same straight to its upstream."""
    direct = reference(targets, "direct", target.upstream_api)
    if direct is None or direct.name not in results or target.name not in results:
        return None
    field = f"{percentile}_ms"
    return float(getattr(results[target.name], field) - getattr(results[direct.name], field))


def name_width(targets: Sequence[Target]) -> int:
    """The first column's width: the longest name."""
    return max((len(t.name) for t in targets), default=6)


def load_table(scenario: Scenario, targets: Sequence[Target], results: Results) -> list[str]:
    """Per target: throughput, latency, CPU, and ratios to the relay."""
    width = name_width(targets)
    lines = [
        "",
        f"== {scenario.name}: {scenario.connections} connections ==",
        f"{'target':{width}} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} "
        f"{'busy':>5} {'upstr':>5} {'other':>5} | relay x: {'CPU/req':>7} {'p50':>6} {'req/s':>6}",
    ]
    for target in targets:
        if scenario.name in target.skip:
            lines.append(f"{target.name:{width}} skipped: {target.skip[scenario.name]}")
            continue
        mine = results[target.name]
        ratios = relay_ratios(targets, results, target)
        shown = ["", "", ""] if ratios is None or target.kind == "direct" else ratios
        cells = [value if isinstance(value, str) else f"{value:.2f}x" for value in shown]
        notes = " (upstream's CPU)" if target.kind == "direct" else ""
        if mine.errors:
            notes += f" ({mine.errors} errors!)"
        lines.append(
            f"{target.name:{width}} {mine.rps:7.0f} {mine.p50_ms:8.2f} {mine.p99_ms:8.2f} "
            f"{mine.cpu_ms_per_request:10.3f} {mine.cpu_busy:5.0%} {mine.upstream_busy:5.0%} "
            f"{mine.outside_busy:5.0%} | "
            f"{'':9}{cells[0]:>7} {cells[1]:>6} {cells[2]:>6}{notes}"
        )
    return lines


NOISY_OUTSIDE_LOAD = 0.10


def outside_load_note(loaded: Mapping[str, Results]) -> list[str]:
    """Warn when other programs used the CPUs during the measurement: ratios get noisy."""
    shares = [summary.outside_busy for results in loaded.values() for summary in results.values()]
    if not shares:
        return []
    worst = max(shares)
    line = (
        f"outside load: other programs used {statistics.mean(shares):.0%} of a CPU on average "
        f"during the windows (worst target {worst:.0%})"
    )
    if worst > NOISY_OUTSIDE_LOAD:
        line += "; the machine was not quiet, so expect noisy ratios: rerun on an idle machine"
    return ["", line]


def unloaded_table(
    scenarios: Sequence[Scenario], targets: Sequence[Target], results: dict[str, Results]
) -> list[str]:
    """One request at a time: p50 and p99, and what each hop adds to them over going direct."""
    width = name_width(targets)
    header = f"{'target':{width}}"
    for scenario in scenarios:
        header += f" {scenario.name + ' p50 ms':>16} {'p99 ms':>8} {'added p50':>9} {'p99':>7}"
    lines = [
        "",
        "== one request at a time (c=1); added = the percentile minus direct's (to the upstream "
        "API used) ==",
        header,
    ]
    for target in targets:
        row = f"{target.name:{width}}"
        for scenario in scenarios:
            summary = results[scenario.name].get(target.name)
            if summary is None:
                row += f" {'-':>16} {'-':>8} {'-':>9} {'-':>7}"
                continue
            added = [
                added_latency(targets, results[scenario.name], target, percentile)
                for percentile in ("p50", "p99")
            ]
            shown = [
                "-" if value is None or target.kind == "direct" else f"{value:+.3f}"
                for value in added
            ]
            row += f" {summary.p50_ms:16.3f} {summary.p99_ms:8.3f} {shown[0]:>9} {shown[1]:>7}"
        lines.append(row)
    return lines


def verdicts(
    scenarios: Sequence[Scenario],
    targets: Mapping[str, Sequence[Target]],
    loaded: dict[str, Results],
    unloaded: dict[str, Results],
) -> list[str]:
    """One PASS/FAIL/SKIP line per default-configuration diglot target and limit."""
    lines = [
        "",
        "== limits: diglot's default configuration against the bare relay on uvloop, this run ==",
    ]
    names = [t.name for t in targets[scenarios[0].name] if t.kind in CHECKED and not t.extra]
    for name in names:
        for scenario in scenarios:
            line = cpu_verdict(scenario, targets[scenario.name], loaded[scenario.name], name)
            lines += [line] if line else []
        for scenario in scenarios:
            lines += latency_verdicts(
                scenario, targets[scenario.name], unloaded[scenario.name], name
            )
    return lines


CHECKED = ("passthrough", "translating")


def cpu_verdict(
    scenario: Scenario, targets: Sequence[Target], results: Results, name: str
) -> str | None:
    """CPU per request against the relay's, under load."""
    target = next(t for t in targets if t.name == name)
    if scenario.name in target.skip:
        return f"SKIP  {name}, {scenario.name}: {target.skip[scenario.name]}"
    ratios = relay_ratios(targets, results, target)
    relay = reference(targets, "relay", target.client_api)
    if ratios is None or relay is None:
        return None
    limit = CPU_LIMITS[target.kind, scenario.stream]
    verdict = "PASS" if ratios[0] <= limit else "FAIL"
    rounds = round_ratios(results[name], results[relay.name])
    return (
        f"{verdict}  {name}, {scenario.name}: CPU/request {ratios[0]:.2f}x relay "
        f"(rounds {min(rounds):.2f}-{max(rounds):.2f}; limit {limit}x)"
    )


def latency_verdicts(
    scenario: Scenario, targets: Sequence[Target], results: Results, name: str
) -> list[str]:
    """Added p50 and p99 of non-stream requests at c=1 (a stream's latency is its duration)."""
    target = next(t for t in targets if t.name == name)
    lines = []
    for percentile, limit in ADDED_LATENCY_LIMITS_MS.items():
        added = added_latency(targets, results, target, percentile)
        if scenario.stream or added is None:
            continue
        verdict = "PASS" if added <= limit else "FAIL"
        lines.append(
            f"{verdict}  {name}, {scenario.name}: c=1 added {percentile} {added:.3f} ms "
            f"(limit {limit} ms)"
        )
    return lines
