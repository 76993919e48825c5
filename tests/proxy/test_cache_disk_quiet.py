"""Writes behind answers wait for a quiet moment: a cold read's tiles land after its answer.

Creating a file costs ~1 ms of kernel CPU on these machines; taken beside a read's
decoding and answer, 81 of them slowed it by 5-10 ms on 2 cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from proxy.cache import disk
from proxy.cache.disk import DiskTier, entry_path
from proxy.cache.entry import CacheEntry
from tests.proxy.cache_helpers import FP


class RecordingPool(ThreadPoolExecutor):
    """A one-thread writer pool that records each batch (job) and when it started."""

    def __init__(self) -> None:
        super().__init__(1)
        self.jobs: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        batch = args[0] if args else []
        with self.lock:
            self.jobs.append((time.monotonic(), len(batch)))
        return super().submit(fn, *args, **kwargs)


def entry(i: int) -> CacheEntry:
    return CacheEntry.create(b"tile %d" % i, "image/png", stored_at=time.time(), ttl=60)


@pytest.fixture
async def pool():
    writer = RecordingPool()
    yield writer
    writer.shutdown()


async def test_a_burst_is_written_in_one_batch_once_no_write_has_come_for_a_while(
    tmp_path, executor, pool
):
    tier = DiskTier(tmp_path, executor=executor, writer=pool, write_quiet=0.05)
    writes = []
    for i in range(20):  # tiles arriving over ~40 ms, as a cold read's do
        writes.append(
            asyncio.ensure_future(tier.write(entry_path(FP, "t", 9, i, 0), entry(i), behind=True))
        )
        await asyncio.sleep(0.002)
    last_asked = time.monotonic()
    await asyncio.gather(*writes)
    assert [size for _, size in pool.jobs] == [20]  # one job, after the burst
    assert pool.jobs[0][0] - last_asked >= 0.045  # the quiet time after the last
    assert (tmp_path / entry_path(FP, "t", 9, 19, 0)).is_file()


async def test_a_steady_stream_is_written_at_least_every_max_delay(
    tmp_path, executor, pool, monkeypatch
):
    monkeypatch.setattr(disk, "WRITE_MAX_DELAY", 0.1)
    tier = DiskTier(tmp_path, executor=executor, writer=pool, write_quiet=0.05)
    start = time.monotonic()
    writes = []
    for i in range(40):  # never quiet for 50 ms: 0.4 s of writes every 10 ms
        writes.append(
            asyncio.ensure_future(tier.write(entry_path(FP, "t", 9, i, 0), entry(i), behind=True))
        )
        await asyncio.sleep(0.01)
    await asyncio.gather(*writes)
    assert sum(size for _, size in pool.jobs) == 40
    assert len(pool.jobs) >= 3  # not held until the stream ends
    assert pool.jobs[0][0] - start < 0.2


async def test_many_writes_waiting_go_at_once(tmp_path, executor, pool, monkeypatch):
    monkeypatch.setattr(disk, "WRITE_MAX_QUEUED", 8)
    tier = DiskTier(tmp_path, executor=executor, writer=pool, write_quiet=10.0)
    rels = [entry_path(FP, "t", 9, i, 0) for i in range(8)]
    await asyncio.wait_for(asyncio.gather(*(tier.write(r, entry(0), behind=True) for r in rels)), 5)
    assert [size for _, size in pool.jobs] == [8]


async def test_writes_waiting_when_their_writer_is_cancelled_are_cancelled_not_lost(
    tmp_path, executor, pool
):
    tier = DiskTier(tmp_path, executor=executor, writer=pool, write_quiet=10.0)
    write = asyncio.ensure_future(tier.write(entry_path(FP, "t", 9, 0, 0), entry(0), behind=True))
    await asyncio.sleep(0.01)
    assert tier._writer is not None
    tier._writer.cancel()  # as at a shutdown: the caller hears of it, it does not hang
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(write, 2)
    assert pool.jobs == []


async def test_a_write_someone_waits_for_goes_at_once_and_takes_the_others(
    tmp_path, executor, pool, monkeypatch
):
    monkeypatch.setattr(disk, "WRITE_MAX_DELAY", 10.0)
    tier = DiskTier(tmp_path, executor=executor, writer=pool, write_quiet=10.0)
    behind = asyncio.ensure_future(tier.write(entry_path(FP, "t", 9, 0, 0), entry(0), behind=True))
    await asyncio.sleep(0.01)
    assert not behind.done()  # waiting for a quiet moment
    start = time.monotonic()
    await asyncio.wait_for(tier.write(entry_path(FP, "t", 9, 1, 0), entry(1)), 2)  # a seed's put
    await asyncio.wait_for(behind, 2)
    assert time.monotonic() - start < 0.5 and [size for _, size in pool.jobs] == [2]
    for i in range(5):  # puts one after another are never held back
        await asyncio.wait_for(tier.write(entry_path(FP, "t", 9, 2 + i, 0), entry(i)), 2)
    assert [size for _, size in pool.jobs] == [2, 1, 1, 1, 1, 1]
