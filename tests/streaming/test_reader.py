"""SourceReader against in-process sources cut from the ground truth (no HTTP)."""

from __future__ import annotations

import asyncio
import math

import morecantile
import numpy as np
import pyproj
import pytest
from morecantile import TileMatrixSet
from rasterio.crs import CRS

from streaming import reader
from streaming.errors import ReadTooLarge
from streaming.gather import bounded_gather
from streaming.plan import split_request
from streaming.reader import ReadLimits, SourceReader
from streaming.sources import FetchedImage
from streaming.types import BBox, TileIndex
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    CENTER_X,
    CENTER_Y,
    assert_pixels_match,
    expected,
    preview_grid,
    tiles_by_hand,
)
from tests.upstreams.render import GroundTruthRenderer

MERCATOR, WGS84 = CRS.from_epsg(3857), CRS.from_epsg(4326)
HALF = math.pi * 6378137.0


def web_mercator(tile_size: int) -> TileMatrixSet:
    """WebMercatorQuad with ``tile_size`` px tiles, from morecantile (not the product's)."""
    if tile_size == 256:
        return morecantile.tms.get("WebMercatorQuad")
    crs = pyproj.CRS.from_epsg(3857)
    return TileMatrixSet.custom(
        [-HALF, -HALF, HALF, HALF], crs, tile_width=tile_size, tile_height=tile_size, maxzoom=24
    )


def output_bounds(grid) -> tuple[float, float, float, float]:
    a, _, c, _, e, f = grid.transform[:6]
    return c, f + e * grid.height, c + a * grid.width, f


class MemoryTiles:
    def __init__(self, renderer: GroundTruthRenderer, tms: TileMatrixSet, max_zoom: int = 18):
        self.renderer, self.tms, self.min_zoom, self.max_zoom = renderer, tms, 0, max_zoom
        self.fetched: list[TileIndex] = []

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        self.fetched.append(tile)
        size = self.tms.matrix(tile.z).tileWidth
        data = self.renderer.tile(self.tms, tile.x, tile.y, tile.z, size)
        return None if data is None else FetchedImage(data, "image/png")


class MemoryBBox:
    def __init__(self, renderer: GroundTruthRenderer, crs: list[CRS], max_size=(4096, 4096)):
        self.renderer, self.crs_list, self.max_size = renderer, crs, max_size
        self.requests: list[tuple[BBox, int, int]] = []

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        self.requests.append((bbox, width, height))
        return FetchedImage(self.renderer.bbox(tuple(bbox), crs, width, height), "image/png")


def test_preview_grid_is_centred_on_the_point_at_ground_resolution():
    # 10 m on the ground at 46.52°N is 10 / cos(46.52°) = 14.5327 m of Web Mercator; the
    # 256 px square is centred on the point: its corner is 128 px up and left of it.
    res = 10.0 / math.cos(math.radians(46.52))
    assert res == pytest.approx(14.532743, abs=1e-6)
    grid = reader.preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    assert (grid.crs, grid.width, grid.height) == (MERCATOR, 256, 256)
    want = (res, 0.0, CENTER_X - 128 * res, 0.0, -res, CENTER_Y + 128 * res)
    assert tuple(grid.transform[:6]) == pytest.approx(want, rel=0, abs=1e-6)


@pytest.mark.parametrize("tile_size", [256, 512])
async def test_tile_source_pixels_land_on_the_ground_truth(renderer, ground_truth, tile_size):
    source = MemoryTiles(renderer, web_mercator(tile_size))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    result = await SourceReader(source).read(output)
    # 10 m ground at 46.5°N is 14.5 m in Mercator: zoom 14 (9.55 m) for 256 px tiles.
    assert result.zoom == (14 if tile_size == 256 else 13)
    # Tiles from the matrix definition: origin (-HALF, HALF), 2**z tiles across.
    cell = 2 * HALF / (tile_size * 2**result.zoom)
    matrix = (2**result.zoom, 2**result.zoom)
    by_hand = tiles_by_hand(
        tuple(output_bounds(output)), (-HALF, HALF), cell, matrix, tile=tile_size
    )
    assert sorted((t.x, t.y) for t in source.fetched) == sorted(by_hand)
    assert {t.z for t in source.fetched} == {result.zoom}
    assert_pixels_match(result.rgba, expected(ground_truth, output))


async def test_coarse_read_costs_coarse_tiles(renderer):
    source = MemoryTiles(renderer, web_mercator(256))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=40.0, size=128)
    result = await SourceReader(source).read(output)
    assert result.zoom == 12
    assert len(source.fetched) <= 4


async def test_tile_source_in_a_geographic_tms(renderer, ground_truth):
    source = MemoryTiles(renderer, morecantile.tms.get("WGS1984Quad"))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    result = await SourceReader(source).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)


async def test_bbox_source_is_split_under_its_max_size(renderer, ground_truth):
    source = MemoryBBox(renderer, [MERCATOR], max_size=(100, 90))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    result = await SourceReader(source).read(output)
    assert result.requests == 9 == len(source.requests)
    assert all(w <= 100 and h <= 90 for _, w, h in source.requests)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=3)


async def test_bbox_source_in_another_crs_is_reprojected(renderer, ground_truth):
    source = MemoryBBox(renderer, [WGS84])
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    result = await SourceReader(source).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output))


async def test_read_past_the_request_budget_is_refused_before_fetching(renderer):
    source = MemoryTiles(renderer, web_mercator(256))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=0.3, size=1024)
    with pytest.raises(ReadTooLarge):
        await SourceReader(source, limits=ReadLimits(max_requests=4)).read(output)
    assert source.fetched == []


@pytest.mark.parametrize(
    ("width", "height", "max_width", "max_height"),
    [
        (1000, 301, 256, 256),
        (256, 256, 200, 150),
        (513, 1, 256, 4096),
        (7, 9, 1, 2),
        (64, 64, 64, 64),
    ],
)
def test_split_request_covers_every_pixel_once(width, height, max_width, max_height):
    parts = split_request(width, height, max_width, max_height)
    # Count per pixel: a gap and an overlap would cancel in a sum of areas.
    coverage = np.zeros((height, width), dtype=np.int32)
    for col, row, w, h in parts:
        assert 0 < w <= max_width and 0 < h <= max_height
        assert col >= 0 and row >= 0 and col + w <= width and row + h <= height
        coverage[row : row + h, col : col + w] += 1
    assert (coverage == 1).all()
    # As few parts as the max size allows.
    assert len(parts) == math.ceil(width / max_width) * math.ceil(height / max_height)


async def test_read_outside_the_tile_matrix_set_is_empty_without_requests(renderer):
    source = MemoryTiles(renderer, morecantile.tms.get("NZTM2000Quad"), max_zoom=10)
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=64)
    result = await SourceReader(source).read(output)
    assert result.requests == 0 and source.fetched == []
    assert not result.rgba.any()


async def test_calls_still_waiting_for_a_slot_are_closed_when_a_read_is_cancelled():
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(60)
        return 1

    waiting = [slow() for _ in range(3)]
    task = asyncio.ensure_future(bounded_gather(waiting, concurrency=1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The first ran and was cancelled; the two that never got a slot are closed, not
    # left to be reported "never awaited" (an error under this suite's warning filters).
    assert [c.cr_frame is None for c in waiting] == [True, True, True]
