"""Single flight: one upstream fetch per cold key, in a process and across processes."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing

import pytest

from proxy.cache.flight import FileLocks, SingleFlight
from proxy.cache.tiles import CacheStatus, Fresh, TileCache
from streaming.errors import SourceUnavailable
from tests.proxy.cache_helpers import KEY, Events, fetch_in_process


class Upstream:
    """A fetch that counts its calls and answers when released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, validators):
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return Fresh(b"tile", "image/png")


async def until(condition) -> None:
    """Let the loop run until ``condition()`` holds (bounded number of turns)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def cache(tmp_path, executor, events) -> TileCache:
    tiles = TileCache(tmp_path / "cache", executor=executor, events=events)
    await tiles.start()
    return tiles


async def test_200_concurrent_requests_of_a_cold_key_fetch_once(cache, events):
    upstream = Upstream()
    tasks = [asyncio.create_task(cache.get_or_fetch(KEY, upstream, ttl=60)) for _ in range(200)]
    await until(lambda: events.counts["join"] == 199)
    assert cache.in_flight == 1
    upstream.release.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    assert {r.status for r in results} == {CacheStatus.MISS}
    assert {r.entry.body for r in results} == {b"tile"}
    # And the next one is a hit, without a fetch.
    assert (await cache.get_or_fetch(KEY, upstream, ttl=60)).status is CacheStatus.HIT
    assert upstream.calls == 1 and cache.in_flight == 0
    await cache.close()


async def test_a_cancelled_waiter_does_not_cancel_the_fetch(cache, events):
    upstream = Upstream()
    first = asyncio.create_task(cache.get_or_fetch(KEY, upstream, ttl=60))
    others = [asyncio.create_task(cache.get_or_fetch(KEY, upstream, ttl=60)) for _ in range(3)]
    await until(lambda: events.counts["join"] == 3)
    first.cancel()  # the caller that started the fetch goes away
    others[0].cancel()
    await asyncio.gather(first, others[0], return_exceptions=True)
    upstream.release.set()
    results = await asyncio.gather(*others[1:])
    assert [r.entry.body for r in results] == [b"tile", b"tile"]
    assert upstream.calls == 1 and first.cancelled()


async def test_an_error_reaches_every_waiter_and_is_not_cached(cache, events):
    upstream = Upstream()
    upstream.error = SourceUnavailable("upstream answered 503")
    tasks = [asyncio.create_task(cache.get_or_fetch(KEY, upstream, ttl=60)) for _ in range(5)]
    await until(lambda: events.counts["join"] == 4)
    upstream.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, SourceUnavailable) for r in results)
    assert upstream.calls == 1
    upstream.error = None  # the upstream is back: the next request fetches again
    result = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert result.status is CacheStatus.MISS and upstream.calls == 2


async def test_a_caller_whose_lower_read_ends_after_the_fetch_takes_it_from_memory(cache):
    """A slow lower tier (an unreachable Redis answers late): the fetch another caller made
    meanwhile is in memory when this caller's read comes back empty; it is not made again."""
    upstream = Upstream()
    upstream.release.set()
    real_read, late = cache.lower.read, asyncio.Event()

    async def read(key_id):
        found = await real_read(key_id)
        if asyncio.current_task().get_name() == "late":
            await late.wait()  # comes back empty after the first caller's fetch
        return found

    cache.lower.read = read
    slow = asyncio.create_task(cache.get_or_fetch(KEY, upstream, ttl=60), name="late")
    await until(lambda: upstream.calls == 0 and not slow.done())
    first = await cache.get_or_fetch(KEY, upstream, ttl=60)
    late.set()
    second = await slow
    assert first.status is CacheStatus.MISS and second.status is CacheStatus.HIT
    assert second.entry.body == b"tile" and upstream.calls == 1


async def test_single_flight_forgets_a_key_when_done():
    flight: SingleFlight[str, int] = SingleFlight()

    async def one() -> int:
        return 1

    assert await flight.run("k", one) == 1
    assert "k" not in flight and len(flight) == 0


async def test_file_lock_excludes_a_second_holder_and_frees_on_release(tmp_path):
    locks = FileLocks(tmp_path / ".locks")
    fd = locks.try_lock("a/b")
    assert fd is not None
    assert locks.try_lock("a/b") is None  # flock: exclusive per open file, even in-process
    import os

    os.close(fd)
    again = locks.try_lock("a/b")
    assert again is not None
    os.close(again)


async def test_a_waiter_fetches_itself_after_the_timeout(tmp_path):
    ticks = []

    async def sleep(seconds: float) -> None:
        ticks.append(seconds)

    now = [0.0]
    locks = FileLocks(tmp_path, timeout=1.0, clock=lambda: now[0] + len(ticks) * 0.25, sleep=sleep)
    held = locks.try_lock("k")  # a stuck peer

    async def nothing_yet():
        return None

    async def call():
        return "fetched"

    assert await locks.run("k", nothing_yet, call) == "fetched"
    assert len(ticks) == 4
    import os

    os.close(held)


async def test_a_waiter_takes_the_peers_result(tmp_path):
    async def sleep(seconds: float) -> None:
        pass

    locks = FileLocks(tmp_path, sleep=sleep)
    held = locks.try_lock("k")
    polls = []

    async def done():
        polls.append(1)
        return "stored by the peer" if len(polls) == 3 else None

    async def call():
        raise AssertionError("must not fetch")

    assert await locks.run("k", done, call) == "stored by the peer"
    import os

    os.close(held)


def test_processes_sharing_the_disk_fetch_a_cold_key_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = 3
    calls = tmp_path / "calls.txt"
    waiting = ctx.Value("i", 0)
    barrier = ctx.Barrier(procs)
    workers = [
        ctx.Process(
            target=fetch_in_process,
            args=(
                str(tmp_path / "cache"),
                str(calls),
                waiting,
                procs,
                barrier,
                str(tmp_path / f"{i}"),
            ),
        )
        for i in range(procs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * procs
    assert len(calls.read_text().splitlines()) == 1
    assert sorted((tmp_path / f"{i}").read_text() for i in range(procs)) == ["MISS"] * procs
    assert waiting.value == procs - 1


async def test_a_started_cache_has_every_lock_file_so_no_lock_creates_one(tmp_path, executor):
    cache = TileCache(tmp_path / "cache", executor=executor)
    await cache.start()
    locks = sorted(p.name for p in (tmp_path / "cache" / ".locks").iterdir())
    assert len(locks) == 4096 and locks[0] == "0000.lock" and locks[-1] == "0fff.lock"
    await cache.start()  # a second start (another worker) keeps them
    assert len(list((tmp_path / "cache" / ".locks").iterdir())) == 4096
    await cache.close()


async def test_a_write_failing_after_the_answer_stays_out_of_the_callers_way(tmp_path, executor):
    cache = TileCache(tmp_path / "cache", executor=executor)
    await cache.start()
    errors = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))

    async def broken(rel, entry):
        raise RuntimeError("no executor")

    cache.lower.write = broken  # type: ignore[method-assign]

    async def fresh(validators):
        return Fresh(b"tile", "image/png")

    result = await cache.get_or_fetch(KEY, fresh, ttl=60)
    assert result.status is CacheStatus.MISS and result.entry.body == b"tile"
    await cache.settle()
    gc.collect()
    assert errors == []  # the load's failure was seen, not left to the loop to report
    assert cache.in_flight == 0 and await cache.get(KEY) is not None  # memory has it
    await cache.close()
