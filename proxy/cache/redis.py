"""The shared tile tier on Redis (or Valkey): one cache for every replica, below each memory LRU.

With ``cache_url = "redis://host:port/db"`` the tiers are memory (per replica) over Redis
(shared) over the upstream. The local disk tier is *replaced*, not kept in between:

- a purge (``DELETE /servers/{id}/cache``) must reach every copy; a disk per replica is a
  copy no other replica can delete, so a purge through one replica would leave the old
  tiles on the others' disks until they expire;
- replicas become stateless (a new one starts warm, a lost one loses nothing) and Redis
  bounds the whole cache with its own ``maxmemory`` policy and the entries' TTLs;
- a memory miss then costs one Redis ``GET`` (measured ~155 µs more a request than a
  local file read on loopback, mostly redis-py's own machinery): the hot set stays in the
  memory LRU, so the difference only shows on its misses (benchmarks/RESULTS.md,
  "Scale-out: shared cache tier").

Values are the disk tier's entry files (:mod:`proxy.cache.entry`: header and body with
their CRCs, so a damaged value is a miss), under ``prefix + key.id``, with a TTL of the
entry's lifetime plus ``stale_grace``: an expired entry stays that long to be revalidated
or served STALE when the upstream fails, then Redis drops it.

Redis is an optimisation, never a dependency of serving: every command has a short
timeout, and a failure (down, slow, refusing writes when full) is counted, logged once per
outage and answered as a miss, so the tile is fetched from the upstream instead. A
:class:`~proxy.net.limits.CircuitBreaker` stops asking after a few failures in a row and
lets one trial command through per cooldown: a down Redis costs no timeout per request and
no herd of reconnects. redis-py reconnects by itself on the next command that goes through.
Cross-replica single flight is :class:`proxy.cache.redis_locks.RedisLocks`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from functools import partial
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.cache.disk import server_path
from proxy.cache.entry import CacheEntry, decode, encode
from proxy.cache.scan import DiskStats
from proxy.errors import CacheUnavailable
from proxy.net.limits import CircuitBreaker
from streaming.errors import SourceUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_PREFIX = "imagery-proxy:"
SCHEMES = ("redis://", "rediss://", "unix://")
SCAN_PAGE = 1000  # keys per SCAN step: each command stays short for Redis and for us
LOCK_SUFFIX = ":lock"
_FAILED = object()
_GLOB = re.compile(r"([*?\[\]\\])")


class RedisObserver(Protocol):
    """Where the tier reports its failures and its state (metrics)."""

    def error(self, op: str) -> None:
        """A command ``op`` failed or timed out (it was answered as a miss)."""

    def degraded(self, value: bool) -> None:
        """The tier became unusable (True) or usable again (False)."""


class NoObserver:
    """Reports to nobody (the default)."""

    def error(self, op: str) -> None:
        """Ignore."""

    def degraded(self, value: bool) -> None:
        """Ignore."""


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis server (the ``cache_url`` setting's shared form)."""
    return url.startswith(SCHEMES)


class RedisTier:
    """Cache entries in Redis by key id, with TTLs; failures are misses, never errors."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 0.1,
        connect_timeout: float = 0.1,
        bulk_timeout: float = 2.0,
        stale_grace: float = 86_400.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        max_connections: int = 32,
        observer: RedisObserver | None = None,
    ) -> None:
        if not is_redis_url(url):
            raise ValueError("a shared cache URL starts with redis://, rediss:// or unix://")
        self.prefix = prefix
        self.timeout = timeout
        self.bulk_timeout = bulk_timeout
        self.stale_grace = stale_grace
        self.observer: RedisObserver = observer or NoObserver()
        # No retries inside redis-py: a retry with backoff would turn a 100 ms budget into
        # seconds. The socket timeout is only a backstop; each call has its own deadline.
        # A bounded pool: a burst of misses queues for a connection (within the command's
        # deadline) instead of opening hundreds of connections at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,
            socket_timeout=max(timeout, bulk_timeout),
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        self._degraded = False
        # Concurrent misses of one key (every request for a cold tile) share one GET.
        self._reads: dict[str, asyncio.Future[CacheEntry | None]] = {}

    # -- one guarded command -------------------------------------------------------------

    async def call(
        self, op: str, command: Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> T | object:
        """``command()``'s result, or ``_FAILED`` when Redis failed, timed out or is skipped."""
        owner = asyncio.current_task()
        try:
            self.breaker.admit(owner)
        except SourceUnavailable:
            return _FAILED  # open circuit: no command, no error counted
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                result = await command()
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.record(False)
            self.observer.error(op)
            log.debug("redis %s failed: %r", op, exc)
            self._set_degraded()
            return _FAILED
        except BaseException:
            self.breaker.release(owner)  # cancelled: the trial goes to the next caller
            raise
        self.breaker.record(True)
        self._set_degraded()
        return result

    def _set_degraded(self) -> None:
        degraded = self.breaker.opened_at is not None
        if degraded != self._degraded:
            self._degraded = degraded
            self.observer.degraded(degraded)
            if degraded:
                log.warning(
                    "the shared cache (Redis) failed %d times in a row: serving from the "
                    "upstream, trying it again every %.1f s",
                    self.breaker.failures,
                    self.breaker.cooldown,
                )
            else:
                log.warning("the shared cache (Redis) answers again")

    @property
    def degraded(self) -> bool:
        """Whether the last commands failed (the circuit is open or testing)."""
        return self._degraded

    async def status(self) -> str:
        """``"ok"`` or ``"degraded"``: a PING, unless the circuit is open (then no I/O)."""
        pong = await self.call("ping", self.client.ping)
        return "degraded" if pong is _FAILED else "ok"

    # -- the tier ------------------------------------------------------------------------

    def key(self, key_id: str) -> str:
        """The Redis key of a cache key id."""
        return self.prefix + key_id

    async def start(self) -> None:
        """Nothing to prepare: the first command connects (a down Redis is not fatal)."""

    async def close(self) -> None:
        """Close the connections."""
        await self.client.aclose()

    async def read(self, key_id: str) -> CacheEntry | None:
        """The entry of ``key_id``; None when absent, damaged or when Redis fails."""
        pending = self._reads.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        # The first reader reads in its own task (no task per read on the hit path) and
        # hands the answer to those who came meanwhile; if it is cancelled they see a miss.
        shared: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()
        self._reads[key_id] = shared
        entry = None
        try:
            entry = await self._read(key_id)
            return entry
        finally:
            del self._reads[key_id]
            shared.set_result(entry)

    async def _read(self, key_id: str) -> CacheEntry | None:
        found = await self.call("get", lambda: self.client.get(self.key(key_id)))
        if not isinstance(found, bytes):
            return None
        return decode(found)

    async def write(self, key_id: str, entry: CacheEntry, *, behind: bool = False) -> None:
        """Store ``entry`` for its lifetime plus the stale grace (a failure is only counted).

        ``behind`` changes nothing: a SET costs the loop little, never a file creation.
        """
        head, body = encode(entry)
        lifetime_ms = max(1000, int((entry.ttl + self.stale_grace) * 1000))
        value = head + body
        await self.call("set", lambda: self.client.set(self.key(key_id), value, px=lifetime_ms))

    # -- deletes and stats: SCAN by prefix and fingerprint, a page at a time ---------------

    async def delete(
        self,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> DiskStats:
        """Delete a server's entries (all, or by zoom, tile range and namespace).

        Raises :class:`CacheUnavailable` when Redis fails: a purge that silently left
        entries behind would be worse than a clear error to retry.
        """
        match = key_filter(zooms, xs, ys, namespaces)
        entries = size = 0
        async for keys in self._pages(fingerprint, "delete"):
            doomed = [k for k in keys if match(k)]
            if not doomed:
                continue
            sizes = await self._bulk("delete", partial(self._strlen_unlink, doomed))
            entries, size = entries + sum(1 for s in sizes if s), size + sum(sizes)
        return DiskStats(entries, size)

    async def _strlen_unlink(self, keys: list[bytes]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.strlen(k)
            pipe.unlink(*keys)
            found: list[int] = await pipe.execute()
        return found[:-1]

    async def stats(self, fingerprint: str) -> DiskStats:
        """Entries and bytes of one server in Redis; :class:`CacheUnavailable` if it fails."""
        entries = size = 0
        async for keys in self._pages(fingerprint, "stats"):
            entries += len(keys)
            size += sum(await self._bulk("stats", partial(self._strlens, keys)))
        return DiskStats(entries, size)

    async def _strlens(self, keys: list[bytes]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.strlen(k)
            found: list[int] = await pipe.execute()
        return found

    async def _pages(self, fingerprint: str, op: str) -> AsyncIterator[list[bytes]]:
        """Pages of the entry keys of ``fingerprint`` (locks left out): an async iterator."""
        pattern = _GLOB.sub(r"\\\1", self.key(server_path(fingerprint))) + "/*"
        cursor, lock = 0, LOCK_SUFFIX.encode()
        while True:
            scan = partial(self.client.scan, cursor, match=pattern, count=SCAN_PAGE)
            cursor, keys = await self._bulk(op, scan)
            # Without decode_responses the keys are bytes.
            yield [k for k in keys if isinstance(k, bytes) and not k.endswith(lock)]
            if cursor == 0:
                return

    async def _bulk(self, op: str, command: Callable[[], Awaitable[T]]) -> T:
        found = await self.call(op, command, self.bulk_timeout)
        if found is _FAILED:
            raise CacheUnavailable("the shared cache (Redis) did not answer")
        return found  # type: ignore[return-value]


def key_filter(
    zooms: range | None,
    xs: range | None,
    ys: range | None,
    namespaces: Collection[str] | None,
) -> Callable[[bytes], bool]:
    """Whether a Redis key (``…/{namespace}/{z}/{x}/{y}``) is in the selection."""

    def match(key: bytes) -> bool:
        ns, z, x, y = key.decode().rsplit("/", 4)[1:]
        return (
            (namespaces is None or ns in namespaces)
            and (zooms is None or int(z) in zooms)
            and (xs is None or int(x) in xs)
            and (ys is None or int(y) in ys)
        )

    return match


def failed(value: object) -> bool:
    """Whether a :meth:`RedisTier.call` result says the command did not go through."""
    return value is _FAILED
