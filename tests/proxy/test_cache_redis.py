"""The shared Redis tier: replicas share entries and purges, one fetch across them.

Against the Redis on 127.0.0.1:6379 (skipped with a reason when absent), each test under a
key prefix of its own (its keys are deleted after it; nothing else in Redis is touched).
Failures (Redis down, silent, restarted, full) are in test_cache_redis_failures.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from proxy.cache.entry import encode
from proxy.cache.redis import RedisTier
from proxy.cache.redis_locks import RedisLocks
from proxy.cache.redis_purges import Purge
from proxy.cache.tiles import CacheKey, CacheStatus, Fresh, TileCache
from streaming.errors import SourceUnavailable
from tests.proxy.cache_helpers import FP, KEY, Clock, Events

REDIS_URL = os.environ.get("IMAGERY_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/0")
TILE = Fresh(b"tile bytes from upstream", "image/png", upstream_etag='"u1"')


def reachable(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url() -> str:
    if not reachable(REDIS_URL):
        pytest.skip(f"Redis not reachable on {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test only; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}:"
    yield name
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=name + "*", count=1000):
            client.unlink(key)


def start_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    """A redis-server of our own on ``port``, without persistence, up and answering."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not reachable(f"redis://127.0.0.1:{port}/0"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("our redis-server did not start")
        time.sleep(0.02)
    return proc


class Observer:
    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.states: list[bool] = []

    def error(self, op: str) -> None:
        self.errors[op] += 1

    def degraded(self, value: bool) -> None:
        self.states.append(value)


class Upstream:
    """A fetch that counts its calls and answers after ``delay`` (so peers pile up)."""

    def __init__(self, answer: Fresh | Exception = TILE, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0

    async def __call__(self, validators: object) -> Fresh:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def replica(
    root: Path, url: str, prefix: str, clock: Clock | None = None, **tier: object
) -> TileCache:
    """A TileCache as one replica has it: its own memory and folder, the shared Redis."""
    shared = RedisTier(url, prefix=prefix, **tier)  # type: ignore[arg-type]
    return TileCache(root, shared=shared, clock=clock or Clock(), events=Events(), lock_timeout=5)


@pytest.fixture
async def replicas(tmp_path, redis_url, prefix) -> AsyncIterator[list[TileCache]]:
    caches = [replica(tmp_path / f"r{i}", redis_url, prefix) for i in range(3)]
    for cache in caches:
        await cache.start()
    yield caches
    for cache in caches:
        await cache.close()


async def test_an_entry_stored_by_one_replica_is_a_hit_on_another(replicas, tmp_path):
    first, second, _ = replicas
    upstream = Upstream()
    assert (await first.get_or_fetch(KEY, upstream, ttl=60)).status == CacheStatus.MISS
    found = await second.get_or_fetch(KEY, Upstream(SourceUnavailable("not asked")), ttl=60)
    assert found.status == CacheStatus.HIT and found.entry is not None
    assert found.entry.body == TILE.body and found.entry.upstream_etag == '"u1"'
    assert upstream.calls == 1
    # Redis replaced the disk tier: no entry file was written under either replica.
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


async def test_entries_live_for_their_ttl_plus_the_stale_grace(redis_url, prefix, tmp_path):
    cache = replica(tmp_path, redis_url, prefix, stale_grace=100.0)
    await cache.get_or_fetch(KEY, Upstream(), ttl=60)
    with redis.Redis.from_url(redis_url) as client:
        left = client.pttl(prefix + KEY.id)
    assert 150_000 < left <= 160_000
    await cache.close()


async def test_an_expired_entry_is_served_stale_from_redis_when_the_upstream_fails(
    redis_url, prefix, tmp_path
):
    clock = Clock()
    first = replica(tmp_path / "a", redis_url, prefix, clock)
    await first.get_or_fetch(KEY, Upstream(), ttl=60)
    clock.advance(120)  # expired for the cache, still in Redis (grace)
    other = replica(tmp_path / "b", redis_url, prefix, clock)
    found = await other.get_or_fetch(KEY, Upstream(SourceUnavailable("down")), ttl=60)
    assert found.status == CacheStatus.STALE and found.entry is not None
    assert found.entry.body == TILE.body
    await first.close()
    await other.close()


@pytest.mark.parametrize("damage", [b"garbage", b"flip"])
async def test_a_damaged_value_is_a_miss(replicas, redis_url, prefix, damage):
    first, second, _ = replicas
    await first.get_or_fetch(KEY, Upstream(), ttl=60)
    with redis.Redis.from_url(redis_url) as client:
        value = client.get(prefix + KEY.id)
        assert value is not None
        if damage == b"flip":  # one bit of the body, so only its CRC tells
            value = value[:-1] + bytes([value[-1] ^ 1])
        else:
            value = damage
        client.set(prefix + KEY.id, value)
    upstream = Upstream()
    found = await second.get_or_fetch(KEY, upstream, ttl=60)
    assert found.status == CacheStatus.MISS and upstream.calls == 1


async def test_concurrent_misses_on_three_replicas_make_one_fetch(replicas):
    upstream = Upstream(delay=0.2)
    asks = [cache.get_or_fetch(KEY, upstream, ttl=60) for cache in replicas for _ in range(40)]
    results = await asyncio.gather(*asks)
    assert upstream.calls == 1
    assert {r.status for r in results} == {CacheStatus.MISS}
    assert all(r.entry is not None and r.entry.body == TILE.body for r in results)
    # Two replicas waited on the Redis lock, the others joined in-process.
    joins = sum(c.events.counts["join"] for c in replicas)  # type: ignore[attr-defined]
    assert joins == 3 * 40 - 1


async def test_a_lock_is_released_only_by_its_owner(redis_url, prefix):
    tier = RedisTier(redis_url, prefix=prefix)
    locks = RedisLocks(tier, lease=5)
    lock = locks.lock_key(KEY.id)
    assert await locks.acquire(lock, "owner-a") is True
    assert await locks.acquire(lock, "owner-b") is False
    assert await locks.release(lock, "owner-b") is False
    assert await tier.client.get(lock) == b"owner-a"
    assert await locks.release(lock, "owner-a") is True
    assert await tier.client.get(lock) is None
    await tier.close()


async def test_the_lock_of_a_dead_owner_expires_and_a_waiter_takes_over(replicas, prefix):
    cache = replicas[0]
    # A replica that took the lock and died: nobody renews or releases it.
    client = cache.shared.client  # type: ignore[union-attr]
    await client.set(prefix + KEY.id + ":lock", "dead-replica", px=300)
    upstream = Upstream()
    found = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert found.status == CacheStatus.MISS and upstream.calls == 1
    assert cache.events.counts["join"] == 1  # type: ignore[attr-defined]
    assert await client.get(prefix + KEY.id + ":lock") is None  # ours, released


async def test_the_owner_renews_its_lease_while_the_fetch_runs(replicas, prefix):
    first, second, _ = replicas
    first._locks.lease_ms = 150  # type: ignore[attr-defined]
    slow, other = Upstream(delay=0.5), Upstream()

    async def later():  # once the first replica holds the lock
        await asyncio.sleep(0.05)
        return await second.get_or_fetch(KEY, other, ttl=60)

    results = await asyncio.gather(first.get_or_fetch(KEY, slow, ttl=60), later())
    # The lease (150 ms) was shorter than the fetch (500 ms): renewed, so no second fetch.
    assert slow.calls + other.calls == 1
    assert all(r.entry is not None for r in results)


async def test_delete_and_stats_scan_only_the_servers_selected_keys(replicas, prefix):
    cache, other_replica, _ = replicas
    other_fp = "cd" + "0" * 62
    keys = [CacheKey(FP, ns, z, x, 3) for ns in ("tile", "meta") for z in (4, 5) for x in (1, 2)]
    for key in keys + [CacheKey(other_fp, "tile", 5, 1, 3)]:
        await cache.put(key, cache.entry(b"x" * key.z, "image/png", ttl=60))
    head, body = encode(cache.entry(b"x" * 5, "image/png", ttl=60))
    # A lock of a fetch in flight is no entry: never counted, never deleted.
    await cache.shared.client.set(prefix + KEY.id + ":lock", "someone", px=5000)  # type: ignore[union-attr]
    stats = await other_replica.stats(FP)
    assert stats.entries == 8 and stats.memory_entries == 0
    gone = await other_replica.delete(FP, zooms=range(5, 6), xs=range(2, 3), namespaces=["tile"])
    assert gone.entries == 1 and gone.bytes == len(head) + len(body)
    assert await other_replica.get(CacheKey(FP, "tile", 5, 2, 3)) is None
    assert await other_replica.get(CacheKey(FP, "meta", 5, 2, 3)) is not None
    gone = await other_replica.delete(FP)
    assert gone.entries == 7
    assert (await other_replica.stats(FP)).entries == 0
    assert (await other_replica.stats(other_fp)).entries == 1
    assert await cache.shared.client.get(prefix + KEY.id + ":lock") == b"someone"  # type: ignore[union-attr]


async def test_a_prefix_with_glob_characters_scans_only_its_own_keys(redis_url, prefix, tmp_path):
    odd = replica(tmp_path / "a", redis_url, prefix + "[a]*:")
    plain = replica(tmp_path / "b", redis_url, prefix + "a:")
    await plain.put(KEY, plain.entry(b"other installation", "image/png", ttl=60))
    assert (await odd.stats(FP)).entries == 0
    assert (await odd.delete(FP)).entries == 0
    assert (await plain.stats(FP)).entries == 1
    await odd.close()
    await plain.close()


def test_a_purge_message_round_trips_and_matches_its_selection():
    purge = Purge.of(FP, range(4, 6), range(10, 11), None, ["tile"])
    again = Purge.decode(purge.encode())
    assert again == purge
    assert again.matches(CacheKey(FP, "tile", 5, 10, 12).id)
    assert not again.matches(CacheKey(FP, "meta", 5, 10, 12).id)
    assert not again.matches(CacheKey(FP, "tile", 6, 10, 12).id)
    assert not again.matches(CacheKey(FP, "tile", 5, 11, 12).id)
    assert not again.matches(CacheKey("cd" + "0" * 62, "tile", 5, 10, 12).id)
    assert Purge.decode(b"not json") is None and Purge.decode(b'{"fp": 1}') is None


async def test_a_purge_through_one_replica_empties_the_others_memory(replicas):
    first, second, third = replicas
    for cache in replicas:
        await asyncio.wait_for(cache.purges.subscribed.wait(), 5)  # type: ignore[union-attr]
    other = CacheKey(FP, "tile", 6, 1, 1)
    for cache in replicas:
        await cache.get_or_fetch(KEY, Upstream(), ttl=60)
        await cache.get_or_fetch(other, Upstream(), ttl=60)
        assert cache.memory.get(KEY.id) is not None
    await third.delete(FP, zooms=range(KEY.z, KEY.z + 1))
    for _ in range(100):
        if first.memory.get(KEY.id) is None and second.memory.get(KEY.id) is None:
            break
        await asyncio.sleep(0.01)
    for cache in replicas:
        assert cache.memory.get(KEY.id) is None  # purged everywhere
        assert cache.memory.get(other.id) is not None  # outside the purge: kept
    upstream = Upstream()
    assert (await first.get_or_fetch(KEY, upstream, ttl=60)).status == CacheStatus.MISS
    assert upstream.calls == 1
