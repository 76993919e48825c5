"""The shared Redis tier when Redis fails: down, silent, restarted, full — misses, never errors.

Tests that stop Redis or fill it start their own ``redis-server`` on a free port.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from proxy.cache.tiles import CacheKey, CacheStatus, Fresh
from proxy.config import load_settings
from proxy.errors import CacheUnavailable
from tests.proxy.cache_helpers import FP, KEY
from tests.proxy.test_cache_redis import Observer, Upstream, free_port, replica, start_redis


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A port with our redis-server on it; the list holds every one started (killed at exit)."""
    port = free_port()
    procs = [start_redis(port)]
    yield port, procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_a_closed_port_is_a_miss_and_opens_the_circuit(tmp_path):
    observer = Observer()
    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = replica(
        tmp_path, url, "x:", breaker_threshold=2, breaker_cooldown=60, observer=observer
    )
    upstream = Upstream()
    first = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert first.status == CacheStatus.MISS and upstream.calls == 1
    # get, lock: two failures opened the circuit; the write was skipped without trying.
    assert sum(observer.errors.values()) == 2 and observer.states == [True]
    assert await cache.backend_status() == "degraded"
    other = CacheKey(FP, "tile", 5, 1, 1)
    assert (await cache.get_or_fetch(other, upstream, ttl=60)).status == CacheStatus.MISS
    assert sum(observer.errors.values()) == 2  # no command while the circuit is open
    assert (await cache.get_or_fetch(KEY, upstream, ttl=60)).status == CacheStatus.HIT  # memory
    with pytest.raises(CacheUnavailable):
        await cache.delete(FP)
    with pytest.raises(CacheUnavailable):
        await cache.stats(FP)
    await cache.close()


async def test_a_redis_that_never_answers_times_out_into_a_miss(tmp_path):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # take the connection, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    observer = Observer()
    cache = replica(tmp_path, f"redis://127.0.0.1:{port}/0", "x:", timeout=0.05, observer=observer)
    upstream = Upstream()
    found = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert found.status == CacheStatus.MISS and upstream.calls == 1
    assert observer.errors["get"] == 1 and observer.errors["lock"] == 1
    await cache.close()
    server.close()
    await server.wait_closed()


async def test_redis_back_after_a_restart_is_used_again(tmp_path, own_redis):
    port, procs = own_redis
    observer = Observer()
    url = f"redis://127.0.0.1:{port}/0"
    cache = replica(
        tmp_path, url, "r:", breaker_threshold=1, breaker_cooldown=0.1, observer=observer
    )
    await cache.get_or_fetch(KEY, Upstream(), ttl=60)
    await cache.settle()  # the write goes on after the answer: one connection, as before
    assert await cache.backend_status() == "ok"
    procs[0].kill()
    procs[0].wait()
    assert await cache.backend_status() == "degraded"
    procs.append(start_redis(port))  # empty: no persistence
    await asyncio.sleep(0.15)  # past the cooldown: the next command is the trial
    assert await cache.backend_status() == "ok"
    assert observer.states == [True, False]
    other = CacheKey(FP, "tile", 5, 1, 1)
    await cache.get_or_fetch(other, Upstream(), ttl=60)
    await cache.settle()  # the write goes on after the answer
    assert await cache.shared.client.exists("r:" + other.id) == 1  # type: ignore[union-attr]
    await cache.close()


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
async def test_a_full_redis_is_a_miss_never_an_error(tmp_path, policy):
    """Full and refusing writes (noeviction), or evicting: tiles are served either way."""
    port = free_port()
    proc = start_redis(port, "--maxmemory", "2mb", "--maxmemory-policy", policy)
    observer = Observer()
    url = f"redis://127.0.0.1:{port}/0"
    cache = replica(tmp_path, url, "full:", observer=observer)
    try:
        big = Fresh(bytes(range(256)) * 400, "image/png")  # 100 KB: 2 MB holds ~20
        results = [
            await cache.get_or_fetch(CacheKey(FP, "tile", 9, x, 1), Upstream(big), ttl=60)
            for x in range(60)
        ]
        assert all(r.entry is not None and r.entry.body == big.body for r in results)
        stored = [
            await cache.shared.read(CacheKey(FP, "tile", 9, x, 1).id)  # type: ignore[union-attr]
            for x in range(60)
        ]
        kept = sum(1 for entry in stored if entry is not None)
        assert 0 < kept < 60
        if policy == "noeviction":
            assert observer.errors["set"] > 0  # refused writes are counted
    finally:
        await cache.close()
        proc.kill()
        proc.wait()


def test_cache_url_is_local_by_default_or_a_redis_url():
    assert load_settings(env={}).cache_url == ""
    env = {"IMAGERY_PROXY_CACHE_URL": "rediss://cache.internal:6380/2"}
    assert load_settings(env=env).cache_url == "rediss://cache.internal:6380/2"
    with pytest.raises(ValueError, match="cache_url"):
        load_settings(env={}, cache_url="http://127.0.0.1:6379")


async def test_ready_details_each_backend_on_the_local_cache(api):
    resp = await api.get("/ready")
    assert resp.status == 200
    assert (await resp.json())["backends"] == {"catalog": "ok", "cache": "ok"}
