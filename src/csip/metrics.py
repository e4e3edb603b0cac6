"""Prometheus metrics of one csip process, exposed at /metrics on the admin listener.

The only module that imports prometheus_client. Its shape follows from the hot path:

- A request that reaches aiohttp costs one dict lookup (the (face, route, status) children,
  made once), one Counter.inc and one Histogram.observe, in aiohttp's access-log hook
  (web/observe.py), which runs with or without middlewares. The route label is the route's
  canonical pattern ("/edev/{id}/fsa"), never the raw path: the label set is bounded by the
  router, whatever clients send.
- A fast-lane answer (web/fastlane.py, in front of aiohttp) costs one Counter.inc on a child
  the answer carries from the moment the slow lane taught it: no lookup, no clock.
- What other code already counts as plain integers (render cache hits and misses, fast-lane
  answers) is not counted a second time on the hot path: `sync()` adds what changed since
  the last sync, at every scrape and every `SYNC_INTERVAL` seconds.
- Figures that live in the database (outbox depth, age of the oldest pending message) are
  read when /metrics is scraped, by whichever worker answers; they are the same for all.

Several workers (`csip serve --workers N`): prometheus-client's multiprocess mode. The parent
points PROMETHEUS_MULTIPROC_DIR at a fresh directory before it spawns the workers
(`prepare_multiprocess`), each worker's counters and histograms live in memory-mapped files
there, and a scrape, which SO_REUSEPORT hands to any one worker, adds up every worker's files
(MultiProcessCollector). Aggregating by asking the other workers would need a channel between
workers that csip does not have (they share only PostgreSQL), would make a scrape wait on
every worker, and would lose the counts of a worker that was killed; the files keep them, so
counters never go backwards when the supervisor replaces a worker. The cost: each increment
writes to a mapped page (about a microsecond), and the counts other workers took from plain
integers (`sync`) reach the files every SYNC_INTERVAL seconds rather than at the scrape.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "mark_worker_dead", "prepare_multiprocess"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How often a worker folds its plain-integer counts into the shared counters.
SYNC_INTERVAL = 5.0
#: The route label of a request no route matched (404, 405, malformed requests).
UNMATCHED = "(unmatched)"
#: Request latency buckets (seconds): a cached poll is well under a millisecond, a VTN
#: event write with its plan tens of milliseconds, a bulk admin call seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: How long a notification waited in the outbox before it was delivered (seconds).
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1800.0, 3600.0)


def multiprocess() -> bool:
    """Whether this process writes its metrics to PROMETHEUS_MULTIPROC_DIR (a worker)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess(directory: Path) -> None:
    """In the parent, before spawning workers: an empty directory for their metric files,
    named in the environment the workers inherit (so their prometheus_client, imported after
    the spawn, writes there)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def mark_worker_dead(pid: int) -> None:
    """A worker ended: its live gauges (devices seen) leave the sum; its counters stay."""
    if multiprocess():
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Database(Collector):
    """Gauges read from the database at scrape time (set by `Metrics.set_outbox`)."""

    def __init__(self) -> None:
        #: kind -> (pending messages, age of the oldest pending in seconds)
        self.outbox: dict[str, tuple[int, float]] = {}

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily(
            "csip_outbox_pending",
            "Notifications in the outbox not yet delivered nor given up, by kind",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            "csip_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered notification, by kind (0 when none is pending)",
            labels=["kind"],
        )
        for kind, (pending, age) in sorted(self.outbox.items()):
            depth.add_metric([kind], pending)
            oldest.add_metric([kind], age)
        yield depth
        yield oldest


class Metrics:
    """One per csip process (csip.app.build); services and faces are handed the parts they
    count. In tests several servers run in one process, each with its own registry."""

    def __init__(self, seen_window: float = 300.0) -> None:
        self.multiprocess = multiprocess()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        if not self.multiprocess:  # per-process figures make no sense summed over workers
            ProcessCollector(registry=registry)
        self.seen_window = seen_window
        self.requests = Counter(
            "csip_http_requests",
            "HTTP requests answered, by face (sep2, vtn, admin, redirect), route pattern and "
            "status; fast-lane answers included",
            ["face", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "csip_http_request_duration_seconds",
            "Time from a request's headers to its last byte written, for requests that reach "
            "the HTTP framework (fast-lane answers are counted, not timed)",
            ["face", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cache_hits = Counter(
            "csip_render_cache_hits", "Render cache lookups that found bytes", registry=registry
        )
        self.cache_misses = Counter(
            "csip_render_cache_misses", "Render cache lookups that found none", registry=registry
        )
        self.cache_renders = Counter(
            "csip_render_cache_renders", "Documents rendered into the cache", registry=registry
        )
        self.fast_lane = Counter(
            "csip_fast_lane_answers",
            "2030.5 polls answered by the fast lane in front of the HTTP framework",
            registry=registry,
        )
        self.seen = Gauge(
            "csip_sep2_clients_seen",
            "Distinct client certificates (devices and aggregators) that made a 2030.5 request "
            "within the last seen window (metrics_seen_window, default one poll interval)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.deliveries = Counter(
            "csip_outbox_deliveries",
            "Notifications delivered, by kind (sep2, webhook, mqtt)",
            ["kind"],
            registry=registry,
        )
        self.delivery_failures = Counter(
            "csip_outbox_delivery_failures",
            "Delivery attempts that failed (retried later, or given up), by kind",
            ["kind"],
            registry=registry,
        )
        self.given_up = Counter(
            "csip_outbox_given_up",
            "Notifications given up after outbox_max_attempts, by kind",
            ["kind"],
            registry=registry,
        )
        self.delivery_lag = Histogram(
            "csip_outbox_delivery_lag_seconds",
            "From a notification's commit to its delivery, by kind",
            ["kind"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "csip_engine_events",
            "Program events the engine applied to 2030.5 (written: created or updated; "
            "deleted: cancelled)",
            ["operation"],
            registry=registry,
        )
        self.controls = Counter(
            "csip_engine_controls",
            "DERControls the engine published or cancelled for events",
            ["operation"],
            registry=registry,
        )
        self.dispatch_plans = Counter(
            "csip_dispatch_plans",
            "Per-device dispatch plans made for a group of a per-device program's event",
            registry=registry,
        )
        self.dispatch_checks = Counter(
            "csip_dispatch_checks",
            "Checks of a running per-device event, by outcome (replanned, unchanged)",
            ["outcome"],
            registry=registry,
        )
        self._database = _Database()
        registry.register(self._database)
        #: (face, route, status) -> (its counter child, its histogram child)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        #: name -> (read the running total, the counter, the total already added)
        self._totals: dict[str, tuple[Callable[[], int], Counter, list[int]]] = {}
        #: (face, route, status) -> [requests answered outside aiohttp, those already folded]
        self._tallies: dict[tuple[str, str, int], list[int]] = {}
        #: lfdi -> when it was last seen (time.monotonic); pruned at sync
        self.seen_clients: dict[str, float] = {}

    # ---- the request path ---------------------------------------------------------------
    def request(self, face: str, route: str, status: int, duration: float) -> None:
        key = (face, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(face, route, str(status)),
                self.latency.labels(face, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(duration)

    def tally(self, face: str, route: str, status: int = 200) -> list[int]:
        """A plain-integer count of requests answered outside aiohttp (the fast lane), one
        per route: `cell[0] += 1` per answer, folded into csip_http_requests_total at every
        sync (a prometheus child's inc costs more than the rest of a fast-lane answer)."""
        key = (face, route, status)
        cell = self._tallies.get(key)
        if cell is None:
            cell = self._tallies[key] = [0, 0]  # [answered, already folded]
        return cell

    # ---- plain-integer counts kept elsewhere ----------------------------------------------
    def follow(self, name: str, read: Callable[[], int], counter: Counter) -> None:
        """Add `read()`'s growth to `counter` at every sync (a running total kept by other
        code, e.g. the render cache's hits)."""
        self._totals[name] = (read, counter, [read()])

    def sync(self) -> None:
        """Fold the followed totals into their counters; refresh the seen-clients gauge."""
        for read, counter, added in self._totals.values():
            total = read()
            if total > added[0]:
                counter.inc(total - added[0])
            added[0] = total
        for (face, route, status), cell in self._tallies.items():
            if cell[0] > cell[1]:
                self.requests.labels(face, route, str(status)).inc(cell[0] - cell[1])
                cell[1] = cell[0]
        horizon = time.monotonic() - self.seen_window
        seen = self.seen_clients
        stale = [lfdi for lfdi, at in seen.items() if at < horizon]
        for lfdi in stale:
            del seen[lfdi]
        self.seen.set(len(seen))

    # ---- database figures -----------------------------------------------------------------
    def set_outbox(self, backlog: dict[str, tuple[int, float]]) -> None:
        self._database.outbox = backlog

    # ---- exposition -----------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's files."""
        self.sync()
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._database)
        return generate_latest(registry)
