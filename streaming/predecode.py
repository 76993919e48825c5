"""Decode tiles while the rest of a read is still being fetched, a batch per executor job.

A cold read waits ~one upstream latency for its tiles, then decodes them all in the
mosaic job. Instead, the tiles that arrived early are decoded meanwhile: pasted straight
into the read's :class:`~streaming.mosaic.Mosaic` when its canvas is known ahead, or into a
memory of decoded tiles (:class:`~streaming.decoded.TileMemo`) for the mosaic to paste. Each
job takes every tile that arrived since the last one started, so a read of 81 tiles
costs a few executor jobs, not 81 (one job per tile held the event loop and the
``/health`` answers back: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

JPEG = b"\xff\xd8"
T = TypeVar("T")


class Predecoder(Generic[T]):
    """Feeds fetched items to ``work`` in the executor, in batches; :meth:`drain` ends it.

    ``work(batch)`` decodes a batch (into a memo of decoded tiles, or pasting into the
    read's mosaic); it must not raise for an item that fails: the mosaic reports it. One
    job at a time takes every item that came since the last one started. Decoding and
    pasting release the GIL, but while tiles arrive both cores are busy (the event loop
    taking answers in, the upstream sending them): two jobs at once, batches capped, or a
    second job for the tail were all slower (bench_reads A/B, medians: warm 24.0 ms
    against 26.1 with two jobs; cold C=81 110 against 115, and 100 against 102 with a
    second job for the tail; benchmarks/RESULTS.md, reads round 4). Round 6, with 81
    distinct tiles to decode: two jobs 101.9 against 100.6 ms.
    """

    def __init__(self, executor: Executor | None, work: Callable[[list[T]], None]) -> None:
        self.executor, self.work = executor, work
        self._pending: list[T] = []
        self._task: asyncio.Future[None] | None = None
        self._open = True

    def add(self, item: T) -> None:
        """Queue a fetched item; a batch job starts unless one is running."""
        if not self._open:
            return
        self._pending.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            await loop.run_in_executor(self.executor, self.work, batch)

    async def drain(self) -> None:
        """Take no more items; wait until the queued ones are done."""
        self._open = False
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        """The read failed: start no more batches."""
        self._open = False
        self._pending = []
