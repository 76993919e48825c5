"""streaming.cog: a window of a streaming image into a COG, block by block, in bounded memory."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from streaming import grid as tiling
from streaming.aoi import parse_aois
from streaming.cog import CogOptions, CogWindow, block_count, blocks, write_cog
from streaming.errors import InvalidRead, SourceUnavailable, WindowOutside
from streaming.image import StreamingImage, plan_grid
from streaming.mosaic import Grid
from streaming.reader import ReadLimits
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    GT_RES,
    MERCATOR,
    assert_pixels_match,
    expected,
)

DX, DY = 0.03, 0.015  # about 1400 x 1000 px
AOI = parse_aois({"type": "Polygon", "coordinates": [[
    [CENTER_LON - DX, CENTER_LAT - DY], [CENTER_LON + DX, CENTER_LAT - DY],
    [CENTER_LON + DX, CENTER_LAT + DY], [CENTER_LON - DX, CENTER_LAT + DY],
    [CENTER_LON - DX, CENTER_LAT - DY]]]})  # fmt: skip


class GroundTruthTiles:
    """Zoom-15 tiles of the ground truth, in process, a little slow; counts reads in flight."""

    def __init__(self, renderer, fail_x: int | None = None) -> None:
        self.renderer, self.fail_x = renderer, fail_x
        self.tms, self.min_zoom, self.max_zoom = tiling.web_mercator_tms(), 0, 15
        self.inflight = self.peak = self.fetched = 0

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.sleep(0.002)
            self.fetched += 1
            if tile.x == self.fail_x:
                raise SourceUnavailable("upstream answered 500")
            body = self.renderer.tile(self.tms, tile.x, tile.y, tile.z, 256, "png")
            return None if body is None else FetchedImage(body, "image/png")
        finally:
            self.inflight -= 1


@pytest.fixture
def image(renderer, executor):
    res = GT_RES * math.cos(math.radians(CENTER_LAT))
    grid = plan_grid(AOI, res, tiling.WEB_MERCATOR_CRS)
    return StreamingImage(
        GroundTruthTiles(renderer), grid, AOI, executor, ReadLimits(max_requests=64)
    )


def test_blocks_tile_the_window_in_raster_order():
    window = CogWindow(3, 5, 1100, 600)
    found = list(blocks(window, 512))
    assert len(found) == block_count(window, 512) == 6
    assert [(w.col_off, w.row_off, w.width, w.height) for w in found[:4]] == [
        (0, 0, 512, 512), (512, 0, 512, 512), (1024, 0, 76, 512), (0, 512, 512, 88)
    ]  # fmt: skip
    assert sum(w.width * w.height for w in found) == 1100 * 600


@pytest.mark.parametrize("compression", ["webp", "lzw"])
async def test_a_window_lands_on_the_ground_truth(
    image, executor, ground_truth, tmp_path, compression
):
    window = CogWindow(40, 30, 600, 520)
    path = tmp_path / "cell.tif"
    options = CogOptions(compression=compression, block=256, tags={"IMAGE_ID": "i1"})
    written = await write_cog(image, window, path, options, executor)
    assert written.bytes == path.stat().st_size and written.blocks == 9
    assert cog_validate(path) == (True, [], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.tif"]  # the stage is gone
    with rasterio.open(path) as src:
        assert src.transform == image.grid.transform * Affine.translation(40, 30)
        assert (src.width, src.height, src.count, src.crs) == (600, 520, 3, MERCATOR)
        assert src.block_shapes == [(256, 256)] * 3 and src.overviews(1)[0] == 2
        assert src.tags()["IMAGE_ID"] == "i1" and src.compression.value.lower() == compression
        rgba = np.concatenate([src.read(), src.dataset_mask()[None]])
        oracle = expected(ground_truth, Grid(MERCATOR, src.transform, 600, 520))
    assert_pixels_match(rgba, oracle, tolerance=6 if compression == "webp" else 4)


async def test_reads_in_flight_are_bounded_by_the_blocks_in_flight(image, executor, tmp_path):
    window = CogWindow(0, 0, 1024, 1000)  # 16 blocks of 256 px, each on 2 x 2 or 3 x 3 tiles
    options = CogOptions(block=256, concurrency=3)
    await write_cog(image, window, tmp_path / "c.tif", options, executor)
    source = image.source
    assert 3 < source.peak <= 3 * 9, source.peak  # several blocks at once, never more than 3


async def test_a_failing_block_fails_the_window_and_leaves_no_file(renderer, executor, tmp_path):
    res = GT_RES * math.cos(math.radians(CENTER_LAT))
    grid = plan_grid(AOI, res, tiling.WEB_MERCATOR_CRS)
    first = tiling.web_mercator_tms().tile(*(grid.transform * (0, 0)), 15, geographic_crs=MERCATOR)
    source = GroundTruthTiles(renderer, fail_x=first.x + 2)
    image = StreamingImage(source, grid, AOI, executor, ReadLimits(max_requests=64))
    with pytest.raises(SourceUnavailable):
        await write_cog(image, CogWindow(0, 0, 1024, 512), tmp_path / "c.tif",
                        CogOptions(block=256, concurrency=2), executor)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


async def test_bad_windows_and_options_are_refused_before_any_file(image, executor, tmp_path):
    with pytest.raises(WindowOutside):
        await write_cog(image, CogWindow(image.grid.width - 10, 0, 20, 20), tmp_path / "c.tif",
                        CogOptions(), executor)  # fmt: skip
    assert list(tmp_path.iterdir()) == [] and image.source.fetched == 0
    for bad in ({"compression": "gif"}, {"block": 500}, {"block": 0}, {"concurrency": 0}):
        with pytest.raises(InvalidRead):
            CogOptions(**bad)


async def test_a_cancel_closes_the_stage_only_after_the_block_being_written(
    image, tmp_path, monkeypatch
):
    # A GDAL dataset closed in one thread under a write in another crashes the process:
    # a cancelled download did, in CI. The close must wait for the write in flight.
    import streaming.cog as cog

    writing, written = threading.Event(), threading.Event()
    closed_under_write: list[bool] = []
    real_write = cog._write_block

    def slow_write(dst, win, rgba):
        writing.set()
        time.sleep(0.3)  # the cancel comes now
        closed_under_write.append(dst.closed)
        if not dst.closed:
            real_write(dst, win, rgba)
        written.set()

    monkeypatch.setattr(cog, "_write_block", slow_write)
    with ThreadPoolExecutor(2) as pool:  # two threads: a close could run beside the write
        task = asyncio.ensure_future(
            write_cog(
                image,
                CogWindow(0, 0, 512, 512),
                tmp_path / "c.tif",
                CogOptions(block=256, concurrency=2),
                pool,
            )  # fmt: skip
        )
        while not writing.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert written.is_set() and closed_under_write and not any(closed_under_write)
    assert list(tmp_path.iterdir()) == []  # the stage is removed once the write has ended
