"""Prometheus metrics: upstream requests, the tile cache, reads; served as ``GET /metrics``.

Every figure about one upstream is labelled with the server it was made for, taken from
the :data:`SERVER` context variable: a handler working for a saved server enters
:func:`server_scope` once, and everything it awaits (tasks it starts included, as asyncio
copies the context) is counted for that server. Work for an unsaved config counts as
``"unsaved"``.

The cache events run on the tile hit path, so each server's label children are made once
and kept (``labels()`` per call costs ~2.7 µs, a kept child's ``inc()`` ~0.7 µs).

With ``imagery-proxy serve --workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR``
before starting the workers: each worker writes its figures into files there, and a scrape
of any worker sums them (:class:`prometheus_client.multiprocess.MultiProcessCollector`).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.cache.types import CacheKey
from proxy.quota.gauges import QuotaMetrics

PREFIX = "imagery_proxy"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNSAVED = "unsaved"
# From a page-cached loopback answer to a slow WMS render, up to the default timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SERVER: contextvars.ContextVar[str] = contextvars.ContextVar("SERVER", default=UNSAVED)
# Set while a job's cell runs: every upstream request sent inside adds one (the cell's count).
REQUEST_COUNTER: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "REQUEST_COUNTER", default=None
)
JOB_STATES = ("pending", "running", "paused", "done", "failed", "cancelled")


@contextmanager
def server_scope(server_id: str) -> Iterator[None]:
    """Count what runs inside (upstream requests, cache events, reads) for ``server_id``."""
    token = SERVER.set(server_id)
    try:
        yield
    finally:
        SERVER.reset(token)


def multiprocess_dir() -> Path | None:
    """The folder workers write their figures into, when several share the port."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


class CacheSizes(Protocol):
    """What the size gauges read of a tile cache (:class:`proxy.cache.tiles.TileCache`)."""

    @property
    def memory(self) -> _MemorySize:
        """The memory tier."""

    @property
    def disk(self) -> _DiskSize:
        """The disk tier."""


class _MemorySize(Protocol):
    @property
    def bytes(self) -> int: ...

    def __len__(self) -> int: ...


class _DiskSize(Protocol):
    @property
    def bytes(self) -> int: ...


@attrs.frozen
class _CacheChildren:
    """One server's cache counters, labelled once."""

    hit: Counter
    miss: Counter
    revalidated: Counter
    stale: Counter
    negative: Counter
    join: Counter


class CacheMetrics:
    """The tile cache's events (:class:`proxy.cache.types.CacheEvents`) as counters by server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(f"{PREFIX}_cache_{name}", doc, ["server"], registry=registry)

        self._families = (
            counter("hits", "Fresh cache entries served (revalidated ones included)"),
            counter("misses", "Cache lookups that asked the upstream (fetch or revalidation)"),
            counter("revalidated", "Expired entries refreshed by a 304 from the upstream"),
            counter("stale", "Expired entries served because the upstream failed"),
            counter("negative", "Cached no-data answers served"),
            counter("single_flight_joins", "Requests that waited for a fetch already running"),
        )
        self._children: dict[str, _CacheChildren] = {}

    def _for(self, server: str) -> _CacheChildren:
        children = self._children.get(server)
        if children is None:
            children = _CacheChildren(*(f.labels(server) for f in self._families))
            self._children[server] = children
        return children

    def hit(self, key: CacheKey) -> None:
        """A fresh entry was served."""
        self._for(SERVER.get()).hit.inc()

    def miss(self, key: CacheKey) -> None:
        """The upstream was asked."""
        self._for(SERVER.get()).miss.inc()

    def revalidated(self, key: CacheKey) -> None:
        """A 304 refreshed an expired entry."""
        self._for(SERVER.get()).revalidated.inc()

    def stale(self, key: CacheKey) -> None:
        """An expired entry was served because the upstream failed."""
        self._for(SERVER.get()).stale.inc()

    def negative(self, key: CacheKey) -> None:
        """A cached negative answer was served."""
        self._for(SERVER.get()).negative.inc()

    def join(self, key: CacheKey) -> None:
        """A request waited for a fetch already running."""
        self._for(SERVER.get()).join.inc()


class UpstreamMetrics:
    """Upstream HTTP requests (each try and each redirect hop) by server: the client's observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"{PREFIX}_upstream_requests",
            "Upstream HTTP requests by status code ('error': no answer)",
            ["server", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_upstream_request_duration_seconds",
            "Time from sending an upstream request to its whole body (or its failure)",
            ["server"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_upstream_errors",
            "Upstream requests that failed, by error code",
            ["server", "error"],
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_upstream_in_flight",
            "Upstream requests being sent or read now",
            ["server"],
            multiprocess_mode="livesum",
            registry=registry,
        )

        # Children bound once per label values: labels() takes a lock and builds a tuple,
        # ~1.5 us each, four per request on the event loop (81 per cold read).
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, bound once."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def started(self) -> None:
        """A request is sent."""
        self._child(self.in_flight, SERVER.get()).inc()
        counter = REQUEST_COUNTER.get()
        if counter is not None:
            counter[0] += 1

    def finished(self, status: int | None, seconds: float, error: str | None = None) -> None:
        """The request ended: with an HTTP ``status``, or with the code of an ``error``."""
        server = SERVER.get()
        self._child(self.in_flight, server).dec()
        self._child(self.requests, server, "error" if status is None else str(status)).inc()
        self._child(self.latency, server).observe(seconds)
        if error is not None:
            self.errors.labels(server, error).inc()


class JobMetrics:
    """Jobs by state (read from the catalog at each scrape), cells and bytes by kind."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Every process reads the same catalog: the latest reading is the figure.
        self.states = Gauge(
            f"{PREFIX}_jobs",
            "Jobs in the catalog by state",
            ["state"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.cells = Counter(
            f"{PREFIX}_job_cells",
            "Job cells finished by this service, by kind and outcome (done, failed)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.bytes = Counter(
            f"{PREFIX}_job_bytes_written",
            "Bytes of job outputs written, by kind",
            ["kind"],
            registry=registry,
        )

    def set_states(self, counts: dict[str, int]) -> None:
        """Set the gauge from the catalog's count of jobs per state."""
        for state in JOB_STATES:
            self.states.labels(state).set(counts.get(state, 0))

    def cell(self, kind: str, outcome: str, bytes_written: int = 0) -> None:
        """A cell ended with ``outcome`` (done or failed) having written ``bytes_written``."""
        self.cells.labels(kind, outcome).inc()
        if bytes_written:
            self.bytes.labels(kind).inc(bytes_written)


class Metrics:
    """Every metric of one process, in its own registry (tests build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.upstream = UpstreamMetrics(self.registry)
        self.cache = CacheMetrics(self.registry)
        self.jobs = JobMetrics(self.registry)
        self.quota = QuotaMetrics(self.registry)
        self.reads = Counter(
            f"{PREFIX}_reads", "Streaming reads served", ["server"], registry=self.registry
        )
        self.guard_refusals = Counter(
            f"{PREFIX}_guard_refusals",
            "Reads refused by the resolution guard (SPEC §5), before any upstream request",
            ["server"],
            registry=self.registry,
        )
        self.workers = Gauge(
            f"{PREFIX}_workers",
            "Worker processes serving",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.workers.set(1)
        self.backend = Gauge(
            f"{PREFIX}_backend",
            "1 for the implementation serving each backend (catalog, cache, jobs, outputs)",
            ["kind", "implementation"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        # Sizes are per process (each worker has its memory tier, and its own running
        # estimate of the shared disk tier): memory sums over workers, disk takes the largest.
        self._memory_bytes = self._size("memory_bytes", "Bytes held by the memory tier", "livesum")
        self._memory_entries = self._size("memory_entries", "Entries in the memory tier", "livesum")
        self._disk_bytes = self._size(
            "disk_bytes", "Bytes on disk, as estimated by the disk tier", "livemax"
        )
        self._caches: list[CacheSizes] = []

    def _size(self, name: str, doc: str, mode: Literal["livesum", "livemax"]) -> Gauge:
        return Gauge(f"{PREFIX}_cache_{name}", doc, multiprocess_mode=mode, registry=self.registry)

    def set_backends(self, backends: dict[str, str]) -> None:
        """Name the implementation of each backend (``Settings.backends()``)."""
        for kind, implementation in backends.items():
            self.backend.labels(kind, implementation).set(1)

    def watch_cache(self, cache: CacheSizes) -> None:
        """Report ``cache``'s sizes in the gauges (read on each :meth:`refresh`)."""
        self._caches.append(cache)

    def count_read(self) -> None:
        """A streaming read was served, for the current :data:`SERVER`."""
        self.reads.labels(SERVER.get()).inc()

    def count_guard_refusal(self) -> None:
        """A read was refused by the resolution guard, for the current :data:`SERVER`."""
        self.guard_refusals.labels(SERVER.get()).inc()

    def refresh(self) -> None:
        """Set the size gauges from the watched caches (at each scrape; in workers, also timed)."""
        self._memory_bytes.set(sum(c.memory.bytes for c in self._caches))
        self._memory_entries.set(sum(len(c.memory) for c in self._caches))
        self._disk_bytes.set(sum(c.disk.bytes for c in self._caches))

    def expose(self) -> bytes:
        """The Prometheus text exposition: of every worker when several run, else this one's.

        Blocking when several workers run (it reads their files): call it in the executor,
        after :meth:`refresh` in the loop.
        """
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry)
        return render_multiprocess(folder)


def render_multiprocess(folder: Path) -> bytes:
    """The figures every process wrote into ``folder``, summed per metric's mode."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def clear_multiprocess_dir(folder: Path) -> None:
    """Make ``folder`` empty of figures from an earlier run (only ``*.db`` files are removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


class RedisMetrics:
    """The shared cache tier (:class:`proxy.cache.redis.RedisObserver`): failures and state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            f"{PREFIX}_cache_redis_errors",
            "Redis commands of the shared cache tier that failed or timed out (served as misses)",
            ["op"],
            registry=registry,
        )
        self.backend_degraded = Gauge(
            f"{PREFIX}_cache_backend_degraded",
            "1 while the shared cache tier (Redis) is skipped after failures, else 0",
            ["backend"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._degraded = self.backend_degraded.labels("redis")
        self._degraded.set(0)

    def error(self, op: str) -> None:
        """A command failed or timed out."""
        self.errors.labels(op).inc()

    def degraded(self, value: bool) -> None:
        """The tier became unusable (True) or usable again (False)."""
        self._degraded.set(1 if value else 0)
