"""Three ``imagery-proxy serve`` processes sharing Redis, each with its own data_dir.

The same server config is created on each replica: without credentials its fingerprint
does not depend on the installation's key (each data_dir has its own), so the three
replicas share the tile keys. The upstream is a loopback fake that counts its requests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.proxy.test_cache_redis import free_port, reachable, start_redis
from tests.proxy.test_metrics import sample
from tests.proxy.tile_helpers import WMQ, centre_tile
from tests.upstreams.xyz import HITS, xyz_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
KEY = "replica-key"
HEADERS = {"X-API-Key": KEY}
REDIS_URL = os.environ.get("IMAGERY_PROXY_TEST_REDIS", "redis://127.0.0.1:6379/0")


class Replica:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.server_id = ""


async def start_replica(folder: Path, cache_url: str, prefix: str) -> Replica:
    folder.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGERY_PROXY_DATA_DIR": str(folder / "data"),
        "IMAGERY_PROXY_API_KEYS": KEY,
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IMAGERY_PROXY_CACHE_URL": cache_url,
        "IMAGERY_PROXY_CACHE_PREFIX": prefix,
        "IMAGERY_PROXY_REDIS_BREAKER_COOLDOWN": "0.2",
        "IMAGERY_PROXY_EXECUTOR_WORKERS": "2",
    }
    cmd = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=folder, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Replica(proc, port)


async def wait_ready(session: aiohttp.ClientSession, replica: Replica) -> None:
    for _ in range(600):
        try:
            async with session.get(replica.url + "/ready") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if replica.proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"replica {replica.url} never got ready")


@asynccontextmanager
async def replicas(
    tmp_path: Path, count: int, cache_url: str, prefix: str, upstream: str
) -> AsyncIterator[tuple[aiohttp.ClientSession, list[Replica]]]:
    started = await asyncio.gather(
        *(start_replica(tmp_path / f"r{i}", cache_url, prefix) for i in range(count))
    )
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            await asyncio.gather(*(wait_ready(session, r) for r in started))
            config = {"name": "tiles", "type": "xyz", "url": upstream + "/a/tiles/{z}/{x}/{y}.png"}
            for replica in started:
                async with session.post(replica.url + "/servers", json=config) as resp:
                    assert resp.status == 201, await resp.text()
                    replica.server_id = (await resp.json())["id"]
            yield session, started
    finally:
        for replica in started:
            if replica.proc.returncode is None:
                replica.proc.send_signal(signal.SIGTERM)
        for replica in started:
            _, err = await asyncio.wait_for(replica.proc.communicate(), 30)
            assert b"Traceback" not in err, err.decode()


def tile_path(replica: Replica, z: int, dx: int = 0) -> str:
    t = centre_tile(z)
    return f"{replica.url}/servers/{replica.server_id}/tiles/{z}/{t.x + dx}/{t.y}.png"


def upstream_hits(app) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for kind, _ in app[HITS] if kind == "xyz")


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    """The shared Redis and a key prefix of this test (its keys deleted afterwards)."""
    if not reachable(REDIS_URL):
        pytest.skip(f"Redis not reachable on {REDIS_URL}")
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield REDIS_URL, prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.unlink(key)


async def get_all(session: aiohttp.ClientSession, urls: list[str]) -> list[tuple[int, bytes, str]]:
    async def one(url: str) -> tuple[int, bytes, str]:
        async with session.get(url) as resp:
            return resp.status, await resp.read(), resp.headers.get("X-Cache", "")

    return await asyncio.gather(*(one(u) for u in urls))


async def scrape(session: aiohttp.ClientSession, replica: Replica) -> str:
    async with session.get(replica.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def ready(session: aiohttp.ClientSession, replica: Replica) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with session.get(replica.url + "/ready") as resp:
        return resp.status, await resp.json()


async def test_three_replicas_share_one_fetch_and_each_others_tiles(
    tmp_path, serve, renderer, shared_redis
):
    app = xyz_app(renderer)
    upstream = await serve(app)
    url, prefix = shared_redis
    async with replicas(tmp_path, 3, url, prefix, upstream) as (session, reps):
        urls = [tile_path(reps[i % 3], 14) for i in range(300)]
        answers = await get_all(session, urls)
        assert {status for status, _, _ in answers} == {200}
        assert upstream_hits(app) == 1
        t = centre_tile(14)
        truth = renderer.tile(WMQ, t.x, t.y, 14, 256, "png")  # what the upstream sent
        assert all(body == truth for _, body, _ in answers)
        # A tile fetched through one replica is a hit on the others (from Redis).
        first = await get_all(session, [tile_path(reps[0], 15)])
        assert first[0][0] == 200 and first[0][2] == "MISS"
        others = await get_all(session, [tile_path(reps[1], 15), tile_path(reps[2], 15)])
        assert [x for _, _, x in others] == ["HIT", "HIT"]
        assert all(body == first[0][1] for _, body, _ in others)
        assert upstream_hits(app) == 2
        status, body = await ready(session, reps[0])
        assert status == 200 and body["backends"] == {"catalog": "ok", "cache": "ok"}
        # A purge through one replica reaches Redis, so every replica's stats.
        async with session.delete(f"{reps[2].url}/servers/{reps[2].server_id}/cache") as resp:
            assert resp.status == 200 and (await resp.json())["deleted_entries"] == 2
        for replica in reps:  # and, through the purge channel, every replica's memory
            for _ in range(100):
                async with session.get(f"{replica.url}/servers/{replica.server_id}/cache") as resp:
                    stats = await resp.json()
                if stats["memory_entries"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert (stats["entries"], stats["memory_entries"]) == (0, 0)
        again = await get_all(session, [tile_path(reps[1], 15)])
        assert again[0][2] == "MISS" and upstream_hits(app) == 3


async def test_an_unreachable_redis_serves_every_tile_and_reports_degraded(
    tmp_path, serve, renderer
):
    app = xyz_app(renderer)
    upstream = await serve(app)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with replicas(tmp_path, 1, closed, "unused:", upstream) as (session, reps):
        urls = [tile_path(reps[0], 14)] * 50 + [tile_path(reps[0], 14, dx) for dx in range(1, 6)]
        answers = await get_all(session, urls)
        assert {status for status, _, _ in answers} == {200}
        assert upstream_hits(app) == 6  # one per tile: single flight in the process holds
        again = await get_all(session, [tile_path(reps[0], 14)])
        assert again[0][2] == "HIT"  # from memory
        status, body = await ready(session, reps[0])
        assert status == 200 and body["backends"] == {"catalog": "ok", "cache": "degraded"}
        text = await scrape(session, reps[0])
        errors = sum(
            sample(text, "imagery_proxy_cache_redis_errors_total", op=op)
            for op in ("get", "set", "lock", "ping")
        )
        assert errors >= 1
        assert sample(text, "imagery_proxy_cache_backend_degraded", backend="redis") == 1


async def test_redis_stopped_mid_run_then_back(tmp_path, serve, renderer):
    app = xyz_app(renderer)
    upstream = await serve(app)
    port = free_port()
    procs = [start_redis(port)]
    try:
        async with replicas(tmp_path, 2, f"redis://127.0.0.1:{port}/0", "mid:", upstream) as (
            session,
            reps,
        ):
            statuses: list[int] = []

            async def load() -> None:
                for step in range(12):  # 12 rounds of 10 requests over both replicas
                    urls = [tile_path(reps[i % 2], 13, step + i // 4) for i in range(10)]
                    statuses.extend(s for s, _, _ in await get_all(session, urls))

            running = asyncio.ensure_future(load())
            while len(statuses) < 40 and not running.done():
                await asyncio.sleep(0.01)
            procs[0].kill()  # Redis goes away mid-run
            await running
            assert len(statuses) == 120 and set(statuses) == {200}
            errors = 0.0
            for replica in reps:
                status, body = await ready(session, replica)
                assert status == 200 and body["backends"]["cache"] == "degraded"
                text = await scrape(session, replica)
                assert sample(text, "imagery_proxy_cache_backend_degraded", backend="redis") == 1
                for op in ("get", "set", "lock", "unlock", "ping"):
                    errors += sample(text, "imagery_proxy_cache_redis_errors_total", op=op)
            assert errors >= 2

            procs.append(start_redis(port))  # back, empty; the replicas reconnect by themselves
            for replica in reps:
                for _ in range(50):
                    if (await ready(session, replica))[1]["backends"]["cache"] == "ok":
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the replica never used Redis again")
            first = await get_all(session, [tile_path(reps[0], 12)])
            await stored_in_redis(port, "mid:")  # the write follows the answer
            second = await get_all(session, [tile_path(reps[1], 12)])
            assert (first[0][2], second[0][2]) == ("MISS", "HIT")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def stored_in_redis(port: int, prefix: str) -> None:
    """Wait until an entry (not a lock) under ``prefix`` is in the Redis on ``port``."""
    with redis.Redis(host="127.0.0.1", port=port) as client:
        for _ in range(100):
            keys = [k for k in client.scan_iter(match=prefix + "*") if not k.endswith(b"lock")]
            if keys:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("no entry reached Redis")
