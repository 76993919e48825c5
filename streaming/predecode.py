"""Decode tiles while the rest of a read is still being fetched, a batch per executor job.

A cold read waits ~one upstream latency for its tiles, then decodes them all in the
mosaic job. With a memory of decoded tiles (:class:`~streaming.decoded.TileMemo`), the
tiles that arrived early are decoded into it meanwhile and the mosaic pastes them. Each
job takes every tile that arrived since the last one started, so a read of 81 tiles
costs a few executor jobs, not 81 (one job per tile held the event loop and the
``/health`` answers back: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from streaming.decoded import TileMemo
from streaming.mosaic import Piece, predecode
from streaming.sources import FetchedImage

JPEG = b"\xff\xd8"


class Predecoder:
    """Feeds fetched tiles to the executor in batches; :meth:`drain` ends it."""

    def __init__(
        self,
        memo: TileMemo,
        executor: Executor | None,
        tile_size: tuple[int, int],
        reduce: int,
        max_pixels: int,
    ) -> None:
        self.memo, self.executor, self.max_pixels = memo, executor, max_pixels
        self.size, self.reduce = tile_size, reduce
        self._pending: list[Piece] = []
        self._task: asyncio.Future[None] | None = None
        self._open = True

    def add(self, image: FetchedImage | None) -> None:
        """Queue a fetched tile (scaled decodes only for JPEG: see ``reduce_factor``)."""
        if image is None or not self._open:
            return
        reduce = self.reduce if image.data.startswith(JPEG) else 1
        w, h = self.size[0] // reduce, self.size[1] // reduce
        self._pending.append(Piece(image.data, 0, 0, w, h, "tile", reduce))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and self._open:
            batch, self._pending = self._pending, []
            await loop.run_in_executor(self.executor, predecode, batch, self.max_pixels, self.memo)

    async def drain(self) -> None:
        """Start no more batches; wait for the running one (what is left, compose decodes)."""
        self._open = False
        self._pending = []
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        """The read failed: start no more batches."""
        self._open = False
        self._pending = []
