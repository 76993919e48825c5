"""The Predecoder: tiles decoded in batches while the others come, one job at a time.

Checked with a real thread pool and a recording ``work``: every item queued is done by
``drain``, once, in batches of what came meanwhile, never two jobs at once; nothing
starts after a cancel.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from streaming.predecode import Predecoder


class Recorder:
    """A ``work`` that records its batches and how many ran at once."""

    def __init__(self, seconds: float = 0.005) -> None:
        self.seconds, self.batches, self.running, self.peak = seconds, [], 0, 0
        self.lock = threading.Lock()

    def __call__(self, batch: list[int]) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.batches.append(list(batch))
        time.sleep(self.seconds)  # a decode: the GIL is free meanwhile
        with self.lock:
            self.running -= 1


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(4)
    yield executor
    executor.shutdown()


async def test_every_item_is_done_once_in_batches_one_job_at_a_time(pool):
    work = Recorder()
    pre: Predecoder[int] = Predecoder(pool, work)
    for i in range(10):  # a burst: all queued before any job starts
        pre.add(i)
    for i in range(10, 20):  # then one at a time, as tiles arrive
        await asyncio.sleep(0.001)
        pre.add(i)
    await pre.drain()
    done = sorted(i for batch in work.batches for i in batch)
    assert done == list(range(20))  # each once, all of them before drain returns
    assert work.batches[0] == list(range(10))  # the burst: one batch
    assert 2 <= len(work.batches) <= 11  # the trickle: what came while a job ran
    assert work.peak == 1


async def test_nothing_starts_after_a_cancel(pool):
    work = Recorder()
    pre: Predecoder[int] = Predecoder(pool, work)
    for i in range(2):
        pre.add(i)
    await asyncio.sleep(0)  # the first job starts with items 0 and 1
    for i in range(2, 6):
        pre.add(i)
    pre.cancel()
    pre.add(99)
    await pre.drain()
    assert work.batches == [[0, 1]]
