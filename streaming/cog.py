"""Write one window of a streaming image into a Cloud-Optimized GeoTIFF, block by block.

Memory stays bounded by the block size whatever the window's size:

1. blocks (``block`` px squares, in raster order) are read through the image with at most
   ``concurrency`` in flight, so the upstream stays busy, and each is written as soon as it
   lands into a tiled GeoTIFF staged beside the output (``{path}.raw``), RGB plus an
   internal dataset mask (band 4 of the read: data AND inside an AOI);
2. GDAL's COG driver copies that stage into ``path``: overviews (average, mask-aware),
   the COG layout (IFDs first) and the asked compression. It reads and writes through
   GDAL's block cache, so it is bounded too.

JPEG is written YCbCr with the mask as an internal mask band; every other compression
keeps RGB and the same internal mask, which QGIS and rasterio read as the dataset mask.
Every blocking step runs in ``executor``; the event loop only awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future, wait
from pathlib import Path
from typing import Any, Literal, get_args

import attrs
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import DatasetWriter
from rasterio.transform import Affine
from rasterio.windows import Window

from streaming.errors import InvalidRead, InvalidWindow, WindowOutside
from streaming.image import StreamingImage

Compression = Literal["jpeg", "webp", "deflate", "lzw", "zstd"]
COMPRESSIONS: tuple[str, ...] = get_args(Compression)
STAGE_SUFFIX = ".raw"
# The stage is read once, by the COG copy: a cheap codec keeps its disk use down.
STAGE_OPTIONS: dict[str, Any] = {"compress": "zstd", "zstd_level": 1, "predictor": 2}


@attrs.frozen(kw_only=True)
class CogOptions:
    """How a COG is written: compression, block (read size and COG tile), reads in flight."""

    compression: Compression = "deflate"
    block: int = 512
    concurrency: int = 8
    quality: int = 90  # JPEG and WebP
    tags: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise InvalidRead(
                f"unknown compression {self.compression!r}",
                hint=f"use one of {', '.join(COMPRESSIONS)}",
            )
        if self.block < 16 or self.block % 16:
            raise InvalidRead(f"the block size must be a multiple of 16, not {self.block}")
        if self.concurrency < 1:
            raise InvalidRead(f"at least one block must be read at a time, not {self.concurrency}")


@attrs.frozen
class CogWindow:
    """A pixel window of the image: the extent of one COG."""

    col_off: int
    row_off: int
    width: int
    height: int


@attrs.frozen
class CogWritten:
    """What writing a COG took: its size, the blocks read and their source requests."""

    bytes: int
    blocks: int
    requests: int  # source requests of the reads (tile cache hits included)


def blocks(window: CogWindow, block: int) -> Iterator[Window]:
    """The windows (relative to ``window``) of its blocks, in raster order."""
    for row in range(0, window.height, block):
        for col in range(0, window.width, block):
            yield Window(col, row, min(block, window.width - col), min(block, window.height - row))


def block_count(window: CogWindow, block: int) -> int:
    """How many blocks :func:`blocks` yields."""
    return math.ceil(window.width / block) * math.ceil(window.height / block)


async def write_cog(
    image: StreamingImage,
    window: CogWindow,
    path: Path,
    options: CogOptions,
    executor: Executor,
) -> CogWritten:
    """Write ``window`` of ``image`` into the COG ``path`` (see the module's steps).

    On any error or cancellation, ``path`` and its stage are removed (a blocking step
    still running in ``executor`` removes them when it ends), and the error propagates.
    """
    check_window(image, window)
    stage = path.with_name(path.name + STAGE_SUFFIX)
    steps = _Steps(executor, (path, stage))
    try:
        dst: DatasetWriter = await steps.run(_open_stage, image, window, stage, options)
        try:
            requests = await _read_blocks(image, window, dst, options, steps)
        finally:  # after a cancel or a failed block, writes may still run in threads
            await steps.run_after_running(dst.close)
        await steps.run(_copy_cog, stage, path, options)
        await steps.run(stage.unlink)
        size = path.stat().st_size
    except BaseException:
        steps.discard()
        raise
    return CogWritten(size, block_count(window, options.block), requests)


def check_window(image: StreamingImage, window: CogWindow) -> None:
    """Refuse a window that is empty or not entirely inside the image (any size is fine)."""
    col, row, width, height = window.col_off, window.row_off, window.width, window.height
    if width <= 0 or height <= 0:
        raise InvalidWindow(f"the window is {width}x{height} px: sizes must be positive")
    size_w, size_h = image.grid.width, image.grid.height
    if col < 0 or row < 0 or col + width > size_w or row + height > size_h:
        raise WindowOutside(
            f"window {col},{row},{width},{height} is not inside the image: "
            f"the image is {size_w}x{size_h} px"
        )


async def _read_blocks(
    image: StreamingImage,
    window: CogWindow,
    dst: DatasetWriter,
    options: CogOptions,
    steps: _Steps,
) -> int:
    """Read every block with ``options.concurrency`` workers; write each as it lands."""
    pending = blocks(window, options.block)
    requests = 0
    write_lock = asyncio.Lock()  # a dataset is not thread-safe: one write at a time

    async def worker() -> None:
        nonlocal requests
        for win in pending:  # a shared iterator: each block goes to one worker
            grid = image.window(
                window.col_off + int(win.col_off),
                window.row_off + int(win.row_off),
                int(win.width),
                int(win.height),
            )
            read = await image.read(grid)
            requests += read.requests
            async with write_lock:
                await steps.run(_write_block, dst, win, read.rgba)

    workers = [asyncio.ensure_future(worker()) for _ in range(options.concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return requests


class _Steps:
    """Blocking steps in the executor; remembers those running, to clean up after them."""

    def __init__(self, executor: Executor, paths: tuple[Path, ...]) -> None:
        self.executor = executor
        self.paths = paths
        self.running: set[Future[Any]] = set()

    async def run(self, fn: Any, *args: Any) -> Any:
        future = self.executor.submit(fn, *args)
        self.running.add(future)
        try:
            return await asyncio.wrap_future(future)
        finally:
            if future.done():
                self.running.discard(future)

    async def run_after_running(self, fn: Any, *args: Any) -> Any:
        """``fn`` once every step running now has ended: a GDAL dataset closed under a
        write in another thread crashes the process (a cancelled download did)."""
        earlier = tuple(self.running)

        def after() -> Any:
            # Earlier steps were queued first, so each is running or done by now: no deadlock.
            wait(earlier)
            return fn(*args)

        return await self.run(after)

    def discard(self) -> None:
        """Remove the files now, and again once each step still running in a thread ends."""
        _remove(self.paths)
        for future in self.running:
            future.add_done_callback(lambda _f: _remove(self.paths))


def _remove(paths: tuple[Path, ...]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        for temp in path.parent.glob(path.name + ".*"):  # GDAL's own (.ovr.tmp, .aux.xml)
            with contextlib.suppress(OSError):
                temp.unlink()


def _open_stage(
    image: StreamingImage, window: CogWindow, stage: Path, options: CogOptions
) -> DatasetWriter:
    transform: Affine = image.grid.transform * Affine.translation(window.col_off, window.row_off)
    dst: DatasetWriter = rasterio.open(
        stage,
        "w",
        driver="GTiff",
        width=window.width,
        height=window.height,
        count=3,
        dtype="uint8",
        crs=image.grid.crs,
        transform=transform,
        tiled=True,
        blockxsize=options.block,
        blockysize=options.block,
        photometric="rgb",
        bigtiff="if_safer",
        **STAGE_OPTIONS,
    )
    dst.update_tags(**dict(options.tags))
    return dst


def _write_block(dst: DatasetWriter, win: Window, rgba: np.ndarray) -> None:
    dst.write(rgba[:3], window=win)
    dst.write_mask(np.where(rgba[3] > 0, np.uint8(255), np.uint8(0)), window=win)


def _copy_cog(stage: Path, path: Path, options: CogOptions) -> None:
    creation: dict[str, Any] = {
        "compress": options.compression.upper(),
        "blocksize": options.block,
        "overview_resampling": "average",
        "bigtiff": "if_safer",
    }
    if options.compression in ("jpeg", "webp"):
        creation["quality"] = options.quality
    elif options.compression in ("deflate", "lzw", "zstd"):
        creation["predictor"] = "yes"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        rasterio.shutil.copy(stage, path, driver="COG", **creation)
