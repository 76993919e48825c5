"""Image grids worked out by hand: CRS choice, plan_grid, windows, bboxes, tiles, cells, masks."""

from __future__ import annotations

import math

import morecantile
import numpy as np
import pyproj
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.features import geometry_mask

from streaming.aoi import parse_aois
from streaming.errors import InvalidCRS, InvalidWindow, WindowOutside
from streaming.image import (
    StreamingImage,
    aoi_mask,
    cells,
    ground_resolution,
    plan_grid,
    resolve_crs,
)
from streaming.layout import project
from streaming.mosaic import Grid
from streaming.reader import ReadLimits
from streaming.types import BBox

MERCATOR, WGS84, UTM32 = CRS.from_epsg(3857), CRS.from_epsg(4326), CRS.from_epsg(32632)
SQUARE = [[6.60, 46.50], [6.66, 46.50], [6.66, 46.54], [6.60, 46.54], [6.60, 46.50]]
HOLE = [[6.621, 46.513], [6.639, 46.513], [6.639, 46.527], [6.621, 46.527], [6.621, 46.513]]
AOIS = parse_aois({"type": "Polygon", "coordinates": [SQUARE, HOLE]})


def snapped(bounds, res):
    """Outward snap of (minx, miny, maxx, maxy) to multiples of ``res``, by definition."""
    minx, miny, maxx, maxy = bounds
    left, right = math.floor(minx / res) * res, math.ceil(maxx / res) * res
    bottom, top = math.floor(miny / res) * res, math.ceil(maxy / res) * res
    return left, bottom, right, top


def dense_bounds(crs, lonlat_ring, n=2000):
    """Bounds in ``crs`` of a lon/lat ring, each edge sampled ``n`` times (pyproj only)."""
    to = pyproj.Transformer.from_crs(4326, crs.to_wkt(), always_xy=True)
    xs, ys = [], []
    for (x0, y0), (x1, y1) in zip(lonlat_ring, lonlat_ring[1:], strict=False):
        t = np.linspace(0, 1, n)
        x, y = to.transform(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
        xs.append(x)
        ys.append(y)
    return min(map(np.min, xs)), min(map(np.min, ys)), max(map(np.max, xs)), max(map(np.max, ys))


def assert_grid(grid, crs, res, bounds):
    left, bottom, right, top = bounds
    assert grid.crs == crs
    assert grid.resolution == pytest.approx(res, rel=1e-12)
    assert tuple(grid.transform[:6]) == pytest.approx((res, 0, left, 0, -res, top), abs=1e-6)
    assert grid.width == round((right - left) / res)
    assert grid.height == round((top - bottom) / res)
    assert grid.bounds() == pytest.approx((left, bottom, right, top), abs=1e-6)


def test_plan_grid_in_web_mercator_by_hand():
    # 4 m on the ground at the AOI centre (46.52 N) is 4 / cos(46.52) Mercator metres.
    res = 4 / math.cos(math.radians(46.52))
    to = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    x0, y0 = to.transform(6.60, 46.50)
    x1, y1 = to.transform(6.66, 46.54)
    grid = plan_grid(AOIS, 4.0, MERCATOR)
    assert_grid(grid, MERCATOR, res, snapped((x0, y0, x1, y1), res))
    assert grid.transform.c / res == pytest.approx(round(grid.transform.c / res), abs=1e-6)
    assert (grid.width, grid.height) == (1150, 1115)


def test_plan_grid_in_utm_by_hand():
    grid = plan_grid(AOIS, 4.0, UTM32)
    # Edges along parallels curve in UTM: the bounds come from the densely sampled ring.
    assert_grid(grid, UTM32, 4.0, snapped(dense_bounds(UTM32, SQUARE), 4.0))


def test_plan_grid_in_lonlat_uses_the_length_of_a_degree_of_latitude():
    geod = pyproj.Geod(ellps="WGS84")
    metres_per_degree = geod.inv(6.63, 46.5199, 6.63, 46.5201)[2] / 0.0002
    assert metres_per_degree == pytest.approx(111_170, rel=1e-3)  # ~111.17 km at 46.5 N
    res = 4 / metres_per_degree
    grid = plan_grid(AOIS, 4.0, WGS84)
    assert_grid(grid, WGS84, res, snapped((6.60, 46.50, 6.66, 46.54), res))


@pytest.mark.parametrize("crs", [MERCATOR, UTM32, WGS84])
def test_ground_resolution_inverts_the_plan(crs):
    grid = plan_grid(AOIS, 4.0, crs)
    assert ground_resolution(grid.as_grid()) == pytest.approx(4.0, rel=2e-4)
    image = StreamingImage(object(), grid, AOIS, None, ReadLimits())  # type: ignore[arg-type]
    decimated = image.window(0, 0, 400, 400, 100, 100)
    assert ground_resolution(decimated) == pytest.approx(16.0, rel=2e-3)


@pytest.mark.parametrize(
    ("text", "epsg"),
    [(None, 3857), ("", 3857), ("EPSG:2056", 2056), ("epsg:32632", 32632), ("4326", 4326)],
)
def test_resolve_crs_codes(text, epsg):
    assert resolve_crs(text, AOIS) == CRS.from_epsg(epsg)


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [
        (6.63, 46.52, 32632),  # zone 32 spans 6..12 E
        (5.99, 46.52, 32631),
        (151.2, -33.9, 32756),  # Sydney: (151.2 + 180) / 6 = 55.2 -> zone 56, south
        (-74.0, 40.7, 32618),  # New York: (180 - 74) / 6 = 17.7 -> zone 18
        (179.99, 0.5, 32660),
    ],
)
def test_utm_zone_of_the_aoi_centre(lon, lat, epsg):
    d = 0.01
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat - d]]
    aois = parse_aois({"type": "Polygon", "coordinates": [ring]})
    assert resolve_crs("utm", aois) == CRS.from_epsg(epsg)
    assert resolve_crs("UTM", aois) == CRS.from_epsg(epsg)


@pytest.mark.parametrize("text", ["mercator", "EPSG:999999", "4978", "EPSG:"])
def test_unknown_or_unusable_crs(text):
    with pytest.raises(InvalidCRS) as info:
        resolve_crs(text, AOIS)
    assert info.value.code == "invalid_crs"
    assert "utm" in (info.value.hint or "")


def image(crs=MERCATOR, limits=None):
    grid = plan_grid(AOIS, 4.0, crs)
    return StreamingImage(object(), grid, AOIS, None, limits or ReadLimits())  # type: ignore[arg-type]


def test_window_grids():
    img = image()
    t = img.grid.transform
    res = img.grid.resolution
    g = img.window(10, 20, 100, 50)
    assert (g.crs, g.width, g.height) == (MERCATOR, 100, 50)
    assert tuple(g.transform[:6]) == pytest.approx(
        (res, 0, t.c + 10 * res, 0, -res, t.f - 20 * res)
    )
    d = img.window(10, 20, 100, 50, out_width=30)  # height follows the aspect
    assert (d.width, d.height) == (30, 15)
    assert d.transform.a == pytest.approx(100 * res / 30)
    assert d.transform.e == pytest.approx(-50 * res / 15)
    last = img.window(img.grid.width - 1, img.grid.height - 1, 1, 1)
    assert (last.transform.c, last.transform.f) == pytest.approx(
        t * (img.grid.width - 1, img.grid.height - 1)
    )


@pytest.mark.parametrize(
    ("window", "error", "words"),
    [
        ((0, 0, 0, 10), InvalidWindow, "must be positive"),
        ((0, 0, 10, -1), InvalidWindow, "must be positive"),
        ((1100, 0, 100, 10), WindowOutside, "partly outside the image: the image is 1150x1115"),
        ((-1, 0, 10, 10), WindowOutside, "partly outside"),
        ((0, 1115, 10, 10), WindowOutside, "lies outside the image"),
        ((-20, 0, 10, 10), WindowOutside, "lies outside the image"),
    ],
)
def test_bad_windows(window, error, words):
    with pytest.raises(error) as info:
        image().window(*window)
    assert words in info.value.message
    assert (
        info.value.code == {InvalidWindow: "invalid_window", WindowOutside: "window_outside"}[error]
    )


def test_output_sizes_are_bounded():
    img = image(limits=ReadLimits(max_pixels=100 * 100))
    img.window(0, 0, 1000, 1000, 100, 100)  # a decimated read within the limit
    for sizes in [(0, 0, 101, 100), (0, 0, 1000, 1000, 101, 100), (0, 0, 10, 10, 0, 5)]:
        with pytest.raises(InvalidWindow):
            img.window(*sizes)
    with pytest.raises(InvalidWindow, match="past the limit of 10000 px"):
        img.preview(max_size=110)


def test_bbox_snapped_to_the_image_pixels():
    img = image()
    t, res = img.grid.transform, img.grid.resolution
    to = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    x0, y0 = to.transform(6.625, 46.515)
    x1, y1 = to.transform(6.635, 46.525)
    g = img.bbox(BBox(6.625, 46.515, 6.635, 46.525), WGS84)
    col0, row0 = math.floor((x0 - t.c) / res), math.floor((t.f - y1) / res)
    col1, row1 = math.ceil((x1 - t.c) / res), math.ceil((t.f - y0) / res)
    assert (g.width, g.height) == (col1 - col0, row1 - row0)
    assert (g.transform.c, g.transform.f) == pytest.approx((t.c + col0 * res, t.f - row0 * res))
    assert g.transform.a == pytest.approx(res)


def test_bbox_at_a_size_or_a_resolution():
    img = image(UTM32)
    box = BBox(316_000.0, 5_153_000.0, 318_000.0, 5_154_000.0)
    g = img.bbox(box, UTM32, width=500)
    assert (g.width, g.height) == (500, 250)
    assert tuple(g.transform[:6]) == pytest.approx((4, 0, 316_000, 0, -4, 5_154_000))
    g = img.bbox(box, UTM32, resolution=3.0)
    assert (g.width, g.height) == (667, 334)
    assert tuple(g.transform[:6]) == pytest.approx((3, 0, 316_000, 0, -3, 5_154_000))
    with pytest.raises(InvalidWindow, match="not both"):
        img.bbox(box, UTM32, width=10, resolution=3.0)
    with pytest.raises(InvalidWindow, match="empty"):
        img.bbox(BBox(1, 1, 0, 2), UTM32)
    with pytest.raises(WindowOutside, match="lies outside the image"):
        img.bbox(BBox(7.0, 46.0, 7.1, 46.1), WGS84)


def test_tile_grid_is_the_tile_of_the_matrix():
    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(6.63, 46.52, 15)
    b = tms.xy_bounds(tile)
    g = image().tile(tms, 15, tile.x, tile.y, size=512)
    assert (g.crs, g.width, g.height) == (MERCATOR, 512, 512)
    res = (b.right - b.left) / 512
    assert tuple(g.transform[:6]) == pytest.approx((res, 0, b.left, 0, -res, b.top))
    with pytest.raises(InvalidWindow, match="outside matrix 15"):
        image().tile(tms, 15, 2**15, 0)
    with pytest.raises(InvalidWindow, match="zoom 30"):
        image().tile(tms, 30, 0, 0)


def test_preview_keeps_the_aspect():
    img = image()
    g = img.preview(256)
    assert (g.width, g.height) == (256, round(1115 * 256 / 1150))
    assert (g.transform.c, g.transform.f) == (img.grid.transform.c, img.grid.transform.f)
    assert img.preview(4096).width == 1150  # never upsampled


def test_cells_cover_every_aoi_pixel_and_skip_the_gap():
    west = [[6.60, 46.50], [6.61, 46.50], [6.61, 46.54], [6.60, 46.54], [6.60, 46.50]]
    east = [[6.65, 46.50], [6.66, 46.50], [6.66, 46.54], [6.65, 46.54], [6.65, 46.50]]
    aois = parse_aois({"type": "MultiPolygon", "coordinates": [[west], [east]]})
    grid = plan_grid(aois, 4.0, MERCATOR)
    found = cells(grid, aois, 128)
    total = math.ceil(grid.width / 128) * math.ceil(grid.height / 128)
    assert 0 < len(found) < total
    assert [c.index for c in found] == list(range(len(found)))
    kept = {(c.col_off, c.row_off) for c in found}
    for row in range(0, grid.height, 128):
        for col in range(0, grid.width, 128):
            w, h = min(128, grid.width - col), min(128, grid.height - row)
            g = Grid(grid.crs, grid.transform * grid.transform.translation(col, row), w, h)
            if aoi_mask(aois, g).any():
                assert (col, row) in kept
    for c in found:
        assert c.width <= 128 and c.height <= 128
        assert shapely.box(*c.bounds).area == pytest.approx(c.width * c.height * grid.resolution**2)


def centre_rule(aois, grid: Grid) -> np.ndarray:
    """Pixels whose centre (taken to lon/lat) is inside the AOI as given: the oracle."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width] + 0.5
    a, b, c, d, e, f = grid.transform[:6]
    xs, ys = c + cols * a + rows * b, f + cols * d + rows * e
    lon, lat = pyproj.Transformer.from_crs(grid.crs.to_wkt(), 4326, always_xy=True).transform(
        xs, ys
    )
    return shapely.contains_xy(aois.geometry, lon, lat)


@pytest.mark.parametrize("crs", [MERCATOR, UTM32])
def test_mask_follows_the_pixel_centre_rule_at_every_edge(crs):
    east = [[6.661, 46.505], [6.668, 46.5052], [6.6655, 46.517], [6.661, 46.505]]
    aois = parse_aois({"type": "MultiPolygon", "coordinates": [[SQUARE, HOLE], [east]]})
    grid = plan_grid(aois, 4.0, crs).as_grid()
    mask = aoi_mask(aois, grid)
    oracle = centre_rule(aois, grid)
    assert (mask == oracle).all(), f"{(mask != oracle).sum()} pixels differ"
    # The rule matters: some pixels touch the AOI without their centre being inside.
    shape = (grid.height, grid.width)
    touched = geometry_mask([project(aois, crs)], shape, grid.transform, all_touched=True)
    assert ((~touched) & ~oracle).sum() > 100
    assert 0 < mask.sum() < mask.size
    hole_centre = pyproj.Transformer.from_crs(4326, crs.to_wkt(), always_xy=True).transform(
        6.63, 46.52
    )
    col, row = ~grid.transform * hole_centre
    assert not mask[int(row), int(col)]
