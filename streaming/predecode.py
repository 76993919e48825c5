"""Decode tiles while the rest of a read is still being fetched, a batch per executor job.

A cold read waits ~one upstream latency for its tiles, then decodes them all in the
mosaic job. Instead, the tiles that arrived early are decoded meanwhile: pasted straight
into the read's :class:`~streaming.mosaic.Mosaic` when its canvas is known ahead, or into a
memory of decoded tiles (:class:`~streaming.decoded.TileMemo`) for the mosaic to paste. Each
job takes the tiles that arrived since the last one started (a few at most), so a read
of 81 tiles costs ~10 executor jobs, not 81 (one job per tile held the event loop and
the ``/health`` answers back: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

JPEG = b"\xff\xd8"
# Two jobs keep both cores of a small machine decoding; batches of 8 JPEG tiles take ~2 ms.
PREDECODE_JOBS = 2
PREDECODE_BATCH = 8
T = TypeVar("T")


class Predecoder(Generic[T]):
    """Feeds fetched items to ``work`` in the executor, in batches; :meth:`drain` ends it.

    ``work(batch)`` decodes a batch (into a memo of decoded tiles, or pasting into the
    read's mosaic); it must not raise for an item that fails: the mosaic reports it. Up
    to ``jobs`` batches run at once, each of at most ``batch`` items, so the tiles that
    arrive last are not left to one long job after the last arrival.
    """

    def __init__(
        self,
        executor: Executor | None,
        work: Callable[[list[T]], None],
        jobs: int = PREDECODE_JOBS,
        batch: int = PREDECODE_BATCH,
    ) -> None:
        self.executor, self.work, self.jobs, self.batch = executor, work, jobs, batch
        self._pending: list[T] = []
        self._workers: list[asyncio.Future[None]] = []
        self._open = True

    def add(self, item: T) -> None:
        """Queue a fetched item; a batch job starts if fewer than ``jobs`` run."""
        if not self._open:
            return
        self._pending.append(item)
        if sum(not worker.done() for worker in self._workers) < self.jobs:
            self._workers.append(asyncio.ensure_future(self._run()))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self.batch], self._pending[self.batch :]
            await loop.run_in_executor(self.executor, self.work, batch)

    async def drain(self) -> None:
        """Take no more items; wait until the queued ones are done."""
        self._open = False
        await asyncio.gather(*self._workers)

    def cancel(self) -> None:
        """The read failed: start no more batches."""
        self._open = False
        self._pending = []
