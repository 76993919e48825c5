"""The tile cache: memory over disk, single-flight fetches, revalidation, stale-if-error.

One entry point serves tile routes, streaming reads and jobs alike::

    cache = TileCache(settings.data_dir / "cache", executor=pool)
    await cache.start()
    key = CacheKey(fingerprint, "tile", z, x, y)
    result = await cache.get_or_fetch(key, fetch, ttl=server.cache_ttl)
    if result.entry is None:   # NEGATIVE: the upstream has no tile there
        ...
    else:                      # HIT | MISS | STALE
        web.Response(body=result.entry.body, headers=result.entry.headers)

``fetch(validators)`` asks the upstream once. It gets the stored ``ETag`` and
``Last-Modified`` when an expired entry is revalidated (send them as ``If-None-Match`` and
``If-Modified-Since``), and answers :class:`Fresh`, :class:`NotModified` (a 304) or
:class:`NoData` (404 or an empty answer); it raises a ``SourceError`` when the upstream
fails. Failures are never stored: the error reaches the callers waiting for that fetch,
and an entry already held (even expired) is served instead, as STALE.

With a ``shared`` tier (:class:`proxy.cache.redis.RedisTier`, the ``cache_url`` setting)
it replaces the disk tier under memory and single flight spans replicas through Redis
locks; the module docstring of :mod:`proxy.cache.redis` says why the disk goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from functools import partial
from pathlib import Path

import attrs

from proxy.cache.background import background_pool
from proxy.cache.disk import DEFAULT_DISK_BYTES, DiskTier
from proxy.cache.entry import CacheEntry
from proxy.cache.flight import FileLocks, SingleFlight
from proxy.cache.memory import DEFAULT_MEMORY_BYTES, MemoryTier
from proxy.cache.redis import RedisTier
from proxy.cache.redis_locks import RedisLocks
from proxy.cache.redis_purges import Purge, PurgeChannel
from proxy.cache.scan import DiskStats
from proxy.cache.tiers import KeyLocks, LowerTier
from proxy.cache.types import (
    NEGATIVE,
    CacheEvents,
    CacheKey,
    CacheResult,
    CacheStats,
    CacheStatus,
    Fetch,
    FetchOutcome,
    Fresh,
    NoData,
    NoEvents,
    NotModified,
    Validators,
)
from streaming.decoded import DecodedTiles
from streaming.errors import SourceBadResponse, SourceError, SourceNotFound

__all__ = [
    "CacheEntry",
    "CacheEvents",
    "CacheKey",
    "CacheResult",
    "CacheStats",
    "CacheStatus",
    "DiskStats",
    "Fetch",
    "FetchOutcome",
    "Fresh",
    "NoData",
    "NoEvents",
    "NotModified",
    "TileCache",
    "Validators",
]

log = logging.getLogger(__name__)

DEFAULT_NEGATIVE_TTL = 60.0


class TileCache:
    """Memory over disk over the upstream, with one fetch per missing key."""

    def __init__(
        self,
        root: Path,
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk_bytes: int = DEFAULT_DISK_BYTES,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        executor: Executor | None = None,
        events: CacheEvents | None = None,
        clock: Callable[[], float] = time.time,
        lock_timeout: float = 15.0,
        shared: RedisTier | None = None,
        lock_lease: float = 5.0,
        writer: Executor | None = None,
    ) -> None:
        self.memory = MemoryTier(memory_bytes)
        # Decoded tiles for reads (the tile routes never decode); replaced to resize it.
        self.decoded = DecodedTiles()
        # Disk writes go behind the answers, on a thread of lower CPU priority (background.py).
        self._own_writer = background_pool("cache-writer") if writer is None else None
        self.disk = DiskTier(
            root, disk_bytes, executor=executor, writer=writer or self._own_writer, clock=clock
        )
        self._executor = executor
        self.shared = shared
        self.lower: LowerTier = self.disk if shared is None else shared
        self.purges = None if shared is None else PurgeChannel(shared)
        self.negative_ttl = negative_ttl
        self._events: CacheEvents = events or NoEvents()
        self._clock = clock
        self._flight: SingleFlight[str, CacheResult] = SingleFlight()
        # Fetches, until written and unlocked (with the future their callers get).
        self._loads: dict[asyncio.Future[CacheResult], asyncio.Future[CacheResult]] = {}
        self._locks: KeyLocks = (
            FileLocks(Path(root) / ".locks", timeout=lock_timeout)
            if shared is None
            else RedisLocks(shared, lease=lock_lease, timeout=lock_timeout)
        )

    async def start(self) -> None:
        """Create the folder and sweep the disk tier once (no disk under a shared tier)."""
        await (self.disk.start() if self.shared is None else self.shared.start())
        if isinstance(self._locks, FileLocks):
            await asyncio.get_running_loop().run_in_executor(self._executor, self._locks.prepare)
        if self.purges is not None:  # other replicas' purges reach this memory
            self.purges.listen(self._purged)

    def _purged(self, purge: Purge) -> None:
        self.memory.delete_where(purge.matches)
        self.decoded.drop(purge.fingerprint)

    async def close(self) -> None:
        """Wait for the writes of fetched entries and a running sweep (on shutdown)."""
        await self.settle()
        await self.disk.wait_sweep()
        if self._own_writer is not None:  # idle after settle(): nothing queued is lost
            self._own_writer.shutdown(wait=False)
        if self.purges is not None:
            await self.purges.close()
        if self.shared is not None:
            await self.shared.close()

    async def backend_status(self) -> str:
        """``"ok"``, or ``"degraded"`` while the shared tier fails (then tiles skip it)."""
        return "ok" if self.shared is None else await self.shared.status()

    @property
    def events(self) -> CacheEvents:
        """The hooks called per answer; settable, so metrics can plug in after start-up."""
        return self._events

    @events.setter
    def events(self, events: CacheEvents | None) -> None:
        self._events = events or NoEvents()

    def missing(self) -> CacheEntry:
        """A new negative entry stored now, for :meth:`put` (a cut metatile's empty tile)."""
        return CacheEntry.missing(stored_at=self._clock(), ttl=self.negative_ttl)

    def now(self) -> float:
        """The cache's clock: entries' ``stored_at`` and freshness are judged by it."""
        return self._clock()

    @property
    def in_flight(self) -> int:
        """Fetches running in this process (a gauge for metrics)."""
        return len(self._flight)

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The stored entry of ``key``, fresh or not (None when absent), without fetching."""
        entry = self.memory.get(key.id)
        if entry is None:
            entry = await self.lower.read(key.id)
            if entry is not None:
                self.memory.put(key.id, entry)
        return entry

    async def get_or_fetch(
        self, key: CacheKey, fetch: Fetch, ttl: float, negative_ttl: float | None = None
    ) -> CacheResult:
        """The entry of ``key``: from memory, disk, or one fetch shared by every caller.

        ``ttl`` is how long entries stay fresh (the server's ``cache_ttl``), ``negative_ttl``
        how long a no-data answer is kept (default: the cache's). Raises the fetch's
        ``SourceError`` when the upstream fails and nothing is stored for ``key``.
        """
        neg_ttl = self.negative_ttl if negative_ttl is None else negative_ttl
        entry = self.memory.get(key.id)
        if entry is None:
            entry = await self.lower.read(key.id)
            if entry is not None:
                self.memory.put(key.id, entry)
            else:  # a load of another caller may have ended while the read waited
                entry = self.memory.get(key.id)
        if entry is not None:
            if entry.negative:
                if self._clock() - entry.stored_at < neg_ttl:
                    self._events.negative(key)
                    return NEGATIVE
            elif self._clock() - entry.stored_at < ttl:
                self._events.hit(key)
                return CacheResult(entry, CacheStatus.HIT)
        load = _Load(self, key, entry, fetch, ttl, neg_ttl)
        return await self._flight.share(key.id, load.start, load.joined)

    async def put(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry`` in both tiers (e.g. each tile cut from one metatile fetch)."""
        self.memory.put(key.id, entry)
        await self._write_lower(key, entry)

    async def _write_lower(self, key: CacheKey, entry: CacheEntry, behind: bool = False) -> None:
        try:
            await self.lower.write(key.id, entry, behind=behind)
        except OSError as exc:  # a full disk degrades to memory only, never to an error
            log.warning("cache write failed for %s: %s", key.fingerprint[:12], exc)

    async def settle(self) -> None:
        """Wait until fetched entries are written and their locks let go (deletes, shutdown).

        Fetches still waiting for the upstream are not waited for.
        """
        while True:
            # A load whose callers have their answer is writing it (under its lock).
            pending = {work for work, ready in self._loads.items() if ready.done()}
            if not pending:
                return
            await asyncio.wait(pending)

    def _loaded(
        self, ready: asyncio.Future[CacheResult], work: asyncio.Future[CacheResult]
    ) -> None:
        """A load ended: its callers get its outcome, unless they had the result already."""
        self._loads.pop(work, None)
        if ready.done():
            if not work.cancelled():
                work.exception()  # seen: the callers had the result already
        elif work.cancelled():
            ready.cancel()
        elif (error := work.exception()) is not None:
            ready.set_exception(error)
        else:
            ready.set_result(work.result())

    def entry(
        self,
        body: bytes,
        content_type: str,
        ttl: float,
        upstream_etag: str | None = None,
        upstream_last_modified: str | None = None,
    ) -> CacheEntry:
        """A new entry stored now (by the cache's clock), for :meth:`put`."""
        return CacheEntry.create(
            body,
            content_type,
            stored_at=self._clock(),
            ttl=ttl,
            upstream_etag=upstream_etag,
            upstream_last_modified=upstream_last_modified,
        )

    async def delete(
        self,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> DiskStats:
        """Delete a server's entries from both tiers: all, a zoom range, or tile ranges.

        See :meth:`DiskTier.delete`; returns what was deleted from disk (or Redis).
        """

        await self.settle()  # a write landing after the delete would bring an entry back
        purge = Purge.of(fingerprint, zooms, xs, ys, namespaces)
        self.memory.delete_where(purge.matches)
        self.decoded.drop(fingerprint)  # keyed by content, not tile: all of the server's
        gone = await self.lower.delete(fingerprint, zooms, xs, ys, namespaces)
        if self.purges is not None:  # and from the other replicas' memory
            await self.purges.publish(purge)
        return gone

    async def stats(self, fingerprint: str) -> CacheStats:
        """One server's entries and bytes on disk (a scan in the executor) and in memory."""
        await self.settle()  # every answered fetch counts, written or about to be
        disk = await self.lower.stats(fingerprint)
        mem_entries = mem_bytes = 0
        for key_id, found in self.memory.items():
            if key_id.split("/", 2)[1] == fingerprint:
                mem_entries, mem_bytes = mem_entries + 1, mem_bytes + len(found.body)
        return CacheStats(disk.entries, disk.bytes, mem_entries, mem_bytes)


@attrs.define
class _Load:
    """One fetch of a key, run once however many callers wait for it."""

    cache: TileCache
    key: CacheKey
    seen: CacheEntry | None  # what the caller found, expired
    fetch: Fetch
    ttl: float
    negative_ttl: float

    def joined(self) -> None:
        """A caller waits for this load, or this load for another process's."""
        self.cache._events.join(self.key)

    def start(self) -> asyncio.Future[CacheResult]:
        """Start the load; the future is its result as soon as it is in memory.

        The write to the lower tier goes on after: the lock (file or Redis) is held until
        the entry is written, so a peer process waiting for it finds the entry, but the
        callers here do not wait for the disk: a cold read of 81 tiles queued its reads
        behind 81 writes (up to ~70 ms, measured). One task per load, no task around it
        waiting for it (each hop cost the event loop ~15 us per cold tile).
        """
        ready: asyncio.Future[CacheResult] = asyncio.get_running_loop().create_future()
        locked = self.cache._locks.run(
            self.key.id, self.stored, partial(self.fetch_and_store, ready), self.joined
        )
        work = asyncio.ensure_future(locked)
        self.cache._loads[work] = ready  # held: the loop keeps only weak references to tasks
        work.add_done_callback(partial(self.cache._loaded, ready))
        return ready

    async def stored(self) -> CacheResult | None:
        """A fresh entry another process stored while we waited for its lock."""
        entry = await self.cache.lower.read(self.key.id)
        if entry is None:
            return None
        age = self.cache._clock() - entry.stored_at
        if age >= (self.negative_ttl if entry.negative else self.ttl):
            return None
        self.cache.memory.put(self.key.id, entry)
        return NEGATIVE if entry.negative else CacheResult(entry, CacheStatus.MISS)

    async def fetch_and_store(self, ready: asyncio.Future[CacheResult]) -> CacheResult:
        cache, key, seen = self.cache, self.key, self.seen
        known = seen if seen is not None and not seen.negative else None
        validators = None
        if known is not None and (known.upstream_etag or known.upstream_last_modified):
            validators = Validators(known.upstream_etag, known.upstream_last_modified)
        cache._events.miss(key)
        try:
            outcome = await self.fetch(validators)
        except SourceNotFound:
            outcome = NoData()
        except SourceError:
            if seen is None:
                raise
            cache._events.stale(key)
            return NEGATIVE if known is None else CacheResult(known, CacheStatus.STALE)
        now = cache._clock()
        if isinstance(outcome, NoData):
            await cache.put(key, CacheEntry.missing(stored_at=now, ttl=self.negative_ttl))
            return NEGATIVE
        if isinstance(outcome, NotModified):
            if validators is None or known is None:
                raise SourceBadResponse("the upstream answered 304 to an unconditional request")
            entry = known.refreshed(now, self.ttl)
            await cache.put(key, entry)
            cache._events.revalidated(key)
            return CacheResult(entry, CacheStatus.HIT)
        entry = CacheEntry.create(
            outcome.body,
            outcome.content_type,
            stored_at=now,
            ttl=self.ttl,
            upstream_etag=outcome.upstream_etag,
            upstream_last_modified=outcome.upstream_last_modified,
        )
        result = CacheResult(entry, CacheStatus.MISS)
        cache.memory.put(key.id, entry)
        ready.set_result(result)  # the callers go on; the lock is held until written
        await cache._write_lower(key, entry, behind=True)  # settle() waits for this load
        return result
