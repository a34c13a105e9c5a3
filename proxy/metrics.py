"""Prometheus metrics at GET /metrics, observed once per request from its log record."""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import NamedTuple

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from diglot.proxy.observability import RequestLog
from diglot.proxy.routing import SESSION_OUTCOMES, Router
from diglot.proxy.state import RECORD
from diglot.proxy.upstream import REPLICA_FAULTS

# Whole requests and streams: from milliseconds to a long agent turn.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# diglot's own share: it should stay in the sub-millisecond buckets.
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SSE = "text/event-stream"


class _Histogram:
    """Bucket counts and a sum, kept as plain numbers: the event loop is the only writer."""

    __slots__ = ("bounds", "counts", "les", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.les = [repr(float(bound)) for bound in bounds] + ["+Inf"]
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' `le` buckets, each counting everything at or below its bound."""
        out, running = [], 0
        for le, count in zip(self.les, self.counts, strict=True):
            running += count
            out.append((le, float(running)))
        return out


class _Timings(NamedTuple):
    """The six timing histograms of one (direction, stream) pair."""

    total: _Histogram
    upstream: _Histogram
    overhead: _Histogram
    first_byte: _Histogram
    upstream_first_byte: _Histogram
    overhead_first_byte: _Histogram

    def observe(self, record: RequestLog, ended: float) -> None:
        """One finished request's durations."""
        total = ended - record.started
        first_byte = (record.first_byte or ended) - record.started
        self.total.observe(total)
        self.first_byte.observe(first_byte)
        if record.upstream_started is not None:
            upstream = (record.upstream_ended or ended) - record.upstream_started
            self.upstream.observe(upstream)
            self.overhead.observe(max(total - upstream, 0.0))
            if record.upstream_answered is not None:
                upstream_first = record.upstream_answered - record.upstream_started
                self.upstream_first_byte.observe(upstream_first)
                self.overhead_first_byte.observe(max(first_byte - upstream_first, 0.0))


# name, help, buckets: in _Timings' order.
_TIMING_FAMILIES = (
    (
        "diglot_request_duration_seconds",
        "Whole request time, from arrival to the end of the answer.",
        _LATENCY,
    ),
    (
        "diglot_upstream_duration_seconds",
        "Upstream time: from sending the upstream request to the last byte of its answer.",
        _LATENCY,
    ),
    (
        "diglot_overhead_seconds",
        "diglot's own time: the request's time not spent waiting for the upstream.",
        _OVERHEAD,
    ),
    (
        "diglot_time_to_first_byte_seconds",
        "From arrival to the client's response headers (the whole answer when not streamed).",
        _LATENCY,
    ),
    (
        "diglot_upstream_time_to_first_byte_seconds",
        "From sending the upstream request to the upstream's response headers.",
        _LATENCY,
    ),
    (
        "diglot_overhead_time_to_first_byte_seconds",
        "diglot's own share of the time to first byte.",
        _OVERHEAD,
    ),
)


_BATCH = 256


class _RequestStats:
    """Per-request counts and timings, turned into metric families only when scraped.

    A finished request is only noted; notes are folded into the counts a batch at a time (and
    before every scrape, so /metrics is always exact). Folding many in one go keeps the
    histograms warm in the CPU's caches, where one request's worth at a time found them cold.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int, str], int] = {}
        self.timings: dict[tuple[str, bool], _Timings] = {}
        self._noted: list[tuple[str, RequestLog, int, float]] = []

    def note(self, route: str, record: RequestLog, status: int, ended: float) -> None:
        noted = self._noted
        noted.append((route, record, status, ended))
        if len(noted) >= _BATCH:
            self.fold()

    def fold(self) -> None:
        """Count the noted requests."""
        noted, self._noted = self._noted, []
        counts = self.counts
        for route, record, status, ended in noted:
            key = (route, record.direction, status, record.transport)
            counts[key] = counts.get(key, 0) + 1
            if record.direction != "local":
                self.timing(record.direction, bool(record.stream)).observe(record, ended)

    def timing(self, direction: str, stream: bool) -> _Timings:
        key = (direction, stream)
        timings = self.timings.get(key)
        if timings is None:
            timings = self.timings[key] = _Timings(
                *(_Histogram(buckets) for _, _, buckets in _TIMING_FAMILIES)
            )
        return timings

    def collect(self) -> Iterator[Metric]:
        self.fold()
        requests = CounterMetricFamily(
            "diglot_requests",
            "Requests answered, by route, direction, HTTP status (499: the client went away) and "
            "transport (a WebSocket turn is a request).",
            labels=["route", "direction", "status", "transport"],
        )
        for (route, direction, status, transport), count in sorted(self.counts.items()):
            requests.add_metric([route, direction, str(status), transport], count)
        yield requests
        for index, (name, documentation, _) in enumerate(_TIMING_FAMILIES):
            family = HistogramMetricFamily(name, documentation, labels=["direction", "stream"])
            for (direction, stream), timings in sorted(self.timings.items()):
                histogram = timings[index]
                labels = [direction, "true" if stream else "false"]
                family.add_metric(labels, histogram.cumulative(), histogram.sum)
            yield family


class Metrics:
    """One registry per app: the process metrics plus diglot's own, labelled with small sets."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._stats = _RequestStats()
        registry.register(self._stats)
        self.active_streams = Gauge(
            "diglot_active_streams",
            "Event streams open to clients.",
            ["direction"],
            registry=registry,
        )
        self.active_websockets = Gauge(
            "diglot_active_websockets",
            "WebSocket connections open to clients.",
            registry=registry,
        )
        self.warnings = Counter(
            "diglot_translation_warnings",
            "Request fields dropped in translation, by top-level field.",
            ["direction", "param"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "diglot_upstream_errors",
            "Upstream faults by kind (see proxy.upstream.FAULT_KINDS).",
            ["direction", "kind"],
            registry=registry,
        )
        self.upstream_retries = Counter(
            "diglot_upstream_retries",
            "Upstream requests sent again after a connection could not be made.",
            ["direction"],
            registry=registry,
        )
        self.background_responses = Counter(
            "diglot_background_responses",
            "Background responses this diglot ended, by final status (a lapsed one: failed).",
            ["status"],
            registry=registry,
        )
        self.background_queue = Gauge(
            "diglot_background_queue_depth",
            "Background responses this diglot runs that are still queued (not streaming yet).",
            registry=registry,
        )

    def finished(self, route: str, record: RequestLog, status: int, ended: float) -> None:
        """Everything one finished request contributes; called once, from the request frame."""
        if record.streaming:
            self.active_streams.labels(record.direction).dec()
        self._stats.note(route, record, status, ended)
        if record.direction != "local":
            self._faults(record)

    def _faults(self, record: RequestLog) -> None:
        kind = record.fault()
        if kind is not None:
            self.upstream_errors.labels(record.direction, kind).inc()
        if record.upstream_retries:
            self.upstream_retries.labels(record.direction).inc(record.upstream_retries)
        for param in record.dropped:
            field = _FIELD.match(param)
            self.warnings.labels(record.direction, field[0] if field else "other").inc()


class _ReplicaStats:
    """Each upstream's replicas, as their own counters stand when scraped (a request only adds
    to plain integers)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        labels = ["upstream", "replica"]
        requests = CounterMetricFamily(
            "diglot_replica_requests",
            "Upstream requests sent to each replica, tries that could not connect included.",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "diglot_replica_errors",
            "Replica failures by kind: refused (no connection), timeout, reset, bad_response "
            "(not HTTP), http_5xx.",
            labels=[*labels, "kind"],
        )
        in_flight = GaugeMetricFamily(
            "diglot_replica_in_flight", "Requests in flight on each replica.", labels=labels
        )
        up = GaugeMetricFamily(
            "diglot_replica_up",
            "1 while a replica is in its upstream's rotation, 0 while it is out (being probed).",
            labels=labels,
        )
        sessions = GaugeMetricFamily(
            "diglot_replica_sessions", "Sessions seated on each replica.", labels=labels
        )
        turns = CounterMetricFamily(
            "diglot_session_turns",
            "Session turns by replica and outcome: kept (the replica of its last turn), moved "
            "(that replica was out of rotation), new (a session's first turn here).",
            labels=[*labels, "outcome"],
        )
        kept = GaugeMetricFamily(
            "diglot_session_affinity_ratio",
            "Share of session turns after the first that kept their replica.",
            labels=["upstream"],
        )
        for pool in self.router.pools:
            stayed = moved = 0
            for replica in pool.replicas:
                names = [pool.name, replica.replica]
                requests.add_metric(names, replica.requests)
                for kind in REPLICA_FAULTS:
                    errors.add_metric([*names, kind], replica.faults[kind])
                in_flight.add_metric(names, replica.in_flight)
                up.add_metric(names, 1 if replica.live else 0)
                sessions.add_metric(names, pool.seated[replica])
                counts = pool.turns[replica]
                for outcome in SESSION_OUTCOMES:
                    turns.add_metric([*names, outcome], counts[outcome])
                stayed, moved = stayed + counts["kept"], moved + counts["moved"]
            if stayed + moved:
                kept.add_metric([pool.name], stayed / (stayed + moved))
        yield from (requests, errors, in_flight, up, sessions, turns, kept)


METRICS = web.AppKey("metrics", Metrics)


def install_router_metrics(metrics: Metrics, router: Router) -> None:
    """Count each upstream's replicas in the app's registry ([[upstreams]] only: with
    `--upstream` alone, the upstream's own series say it all)."""
    metrics.registry.register(_ReplicaStats(router))


def install_metrics(app: web.Application) -> Metrics:
    """Give the app its registry."""
    metrics = app[METRICS] = Metrics()
    return metrics


async def start_answer(request: web.Request, response: web.StreamResponse) -> None:
    """Send a streamed answer's headers, noting its time to first byte and any event stream."""
    record = request.get(RECORD)
    if record is not None and record.first_byte is None:
        record.first_byte = time.perf_counter()
        if response.content_type == _SSE:
            record.streaming = True
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.active_streams.labels(record.direction).inc()
    await response.prepare(request)


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics in Prometheus' text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
