"""Streaming image reads over the fake XYZ server on loopback, checked against the ground truth."""

from __future__ import annotations

import math

import aiohttp
import morecantile
import numpy as np
import pyproj
import pytest
import shapely
from rasterio.crs import CRS

from streaming.aoi import parse_aois
from streaming.image import StreamingImage, plan_grid
from streaming.mosaic import Grid
from streaming.reader import ReadLimits
from streaming.sources import FetchedImage
from streaming.types import BBox, TileIndex
from tests.groundtruth import assert_pixels_match, envelope, expected, tiles_by_hand
from tests.upstreams.xyz import xyz_app

MERCATOR, WGS84, UTM32 = CRS.from_epsg(3857), CRS.from_epsg(4326), CRS.from_epsg(32632)
WMQ = morecantile.tms.get("WebMercatorQuad")
HALF = math.pi * 6378137.0
SQUARE = [[6.60, 46.50], [6.66, 46.50], [6.66, 46.54], [6.60, 46.54], [6.60, 46.50]]
HOLE = [[6.621, 46.513], [6.639, 46.513], [6.639, 46.527], [6.621, 46.527], [6.621, 46.513]]
AOIS = parse_aois({"type": "Polygon", "coordinates": [SQUARE, HOLE]})


class XyzTiles:
    """A tile source of the tests' own over the fake server's /{s}/tiles path."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base
        self.tms, self.min_zoom, self.max_zoom = WMQ, 0, 16
        self.fetched: list[TileIndex] = []

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        self.fetched.append(tile)
        async with self.session.get(f"{self.base}/a/tiles/{tile.z}/{tile.x}/{tile.y}.png") as r:
            if r.status == 404:
                return None
            assert r.status == 200, await r.text()
            return FetchedImage(await r.read(), r.content_type)


class MemoryBBox:
    """A bbox source rendering the ground truth in-process, in EPSG:4326 only."""

    def __init__(self, renderer, max_size=(200, 200)) -> None:
        self.renderer, self.crs_list, self.max_size = renderer, [WGS84], max_size
        self.requests: list[tuple[BBox, int, int]] = []

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        self.requests.append((bbox, width, height))
        return FetchedImage(self.renderer.bbox(tuple(bbox), crs, width, height), "image/png")


@pytest.fixture
async def tiles(serve, renderer):
    base = await serve(xyz_app(renderer))
    async with aiohttp.ClientSession() as session:
        yield XyzTiles(session, base)


def image(source, crs=MERCATOR, aois=AOIS, executor=None) -> StreamingImage:
    return StreamingImage(source, plan_grid(aois, 4.0, crs), aois, executor, ReadLimits())


def centre_rule(aois, grid: Grid) -> np.ndarray:
    """Pixels whose centre, taken to lon/lat, is inside the AOI as given (the oracle)."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width] + 0.5
    xs, ys = grid.transform * (cols, rows)
    to_lonlat = pyproj.Transformer.from_crs(grid.crs.to_wkt(), 4326, always_xy=True)
    return shapely.contains_xy(aois.geometry, *to_lonlat.transform(xs, ys))


@pytest.mark.parametrize("crs", [MERCATOR, UTM32])
async def test_a_window_lands_where_the_ground_truth_has_it(tiles, ground_truth, executor, crs):
    img = image(tiles, crs, executor=executor)
    output = img.window(100, 120, 160, 128)  # north-west of the hole, inside the AOI
    assert centre_rule(AOIS, output).all()
    read = await img.read(output)
    assert read.rgba.shape == (4, 128, 160) and read.rgba.dtype == np.uint8
    assert_pixels_match(read.rgba, expected(ground_truth, output))
    assert read.zoom == 15  # 4 m/px ground: z15's 4.78 Mercator m is 3.29 m at 46.5 N
    assert read.requests == len(tiles.fetched) == len(set(tiles.fetched))
    assert {t.z for t in tiles.fetched} == {15}
    assert read.ground_resolution == pytest.approx(4.0, rel=1e-3)
    assert read.resolution == pytest.approx(img.grid.resolution)


@pytest.mark.parametrize("crs", [MERCATOR, UTM32])
async def test_the_mask_is_data_and_inside_the_aoi_at_its_edges(tiles, executor, crs):
    img = image(tiles, crs, executor=executor)
    # A window over the hole's south-west corner and crossing nothing but AOI and hole.
    to = pyproj.Transformer.from_crs(4326, crs.to_wkt(), always_xy=True)
    col, row = ~img.grid.transform * to.transform(6.621, 46.513)
    output = img.window(int(col) - 40, int(row) - 40, 80, 80)
    read = await img.read(output)
    inside = centre_rule(AOIS, output)
    assert 0 < inside.sum() < inside.size
    assert ((read.rgba[3] > 0) == inside).all()
    assert (read.rgba[:3, ~inside] == 0).all()


async def test_a_decimated_read_fetches_coarse_tiles_only(tiles, ground_truth, executor):
    img = image(tiles, executor=executor)
    output = img.window(300, 300, 512, 256, out_width=64)  # 8 times coarser: 46.5 m Mercator
    estimate = img.estimate(output)
    read = await img.read(output)
    # Zoom 12 (38.2 m) is the coarsest at least as fine as 46.5 m; zoom 11 is 76.4 m.
    assert read.zoom == estimate.zoom == 12
    cell = 2 * HALF / 2**12 / 256
    want = tiles_by_hand(envelope(output, MERCATOR), (-HALF, HALF), cell, (2**12, 2**12))
    assert {(t.x, t.y) for t in tiles.fetched} == want
    assert {t.z for t in tiles.fetched} == {12}
    assert read.requests == estimate.requests == len(want)
    assert read.ground_resolution == pytest.approx(32.0, rel=1e-3)
    inside = centre_rule(AOIS, output)
    oracle = expected(ground_truth, output)
    err = np.abs(read.rgba[:3, inside].astype(int) - oracle[:, inside].astype(int)).mean()
    assert err < 12


@pytest.mark.parametrize(
    "make",
    [
        lambda img: img.window(0, 0, 300, 200),
        lambda img: img.window(0, 0, 1150, 1115, 100, 97),
        lambda img: img.bbox(BBox(6.62, 46.51, 6.64, 46.52), WGS84),
        lambda img: img.tile(WMQ, 14, *WMQ.tile(6.63, 46.52, 14)[:2]),
        lambda img: img.preview(128),
    ],
    ids=["window", "decimated", "bbox", "tile", "preview"],
)
async def test_the_estimate_is_what_the_read_costs(tiles, executor, make):
    img = image(tiles, executor=executor)
    output = make(img)
    estimate = img.estimate(output)
    assert tiles.fetched == []  # estimating fetches nothing
    read = await img.read(output)
    assert estimate.requests == read.requests == len(tiles.fetched) > 0
    assert estimate.zoom == read.zoom
    assert estimate.bytes == estimate.requests * 256 * 256
    assert estimate.ground_resolution == pytest.approx(read.ground_resolution)


async def test_a_read_outside_every_aoi_costs_nothing(tiles, executor):
    west = [[6.60, 46.50], [6.61, 46.50], [6.61, 46.54], [6.60, 46.54], [6.60, 46.50]]
    east = [[6.65, 46.50], [6.66, 46.50], [6.66, 46.54], [6.65, 46.54], [6.65, 46.50]]
    aois = parse_aois({"type": "MultiPolygon", "coordinates": [[west], [east]]})
    img = image(tiles, aois=aois, executor=executor)
    output = img.window(500, 300, 64, 64)  # in the gap between the two squares
    assert img.estimate(output).requests == 0
    read = await img.read(output)
    assert read.requests == 0 and tiles.fetched == []
    assert not read.rgba.any()


async def test_a_bbox_source_read_is_estimated_and_lands_right(renderer, ground_truth, executor):
    source = MemoryBBox(renderer)
    img = image(source, UTM32, executor=executor)
    output = img.window(100, 120, 300, 260)
    estimate = img.estimate(output)
    assert source.requests == []
    read = await img.read(output)
    assert estimate.requests == read.requests == len(source.requests) > 1  # split at 200 px
    assert estimate.zoom is read.zoom is None
    assert all(crs_w <= 200 and crs_h <= 200 for _, crs_w, crs_h in source.requests)
    assert_pixels_match(read.rgba, expected(ground_truth, output))
