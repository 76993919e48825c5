"""Tile and grid arithmetic at its edges, by hand: the cases mutation testing found unguarded.

Each expected value is computed here from the definition (origin, cell size, tile size),
never from :mod:`streaming.grid`; see docs/testing.md for the mutants these kill.
"""

from __future__ import annotations

import math

import morecantile
import pytest
from rasterio.crs import CRS

from streaming import grid
from streaming.plan import split_request
from streaming.types import BBox, TileIndex

HALF = 20037508.342789244  # pi * 6378137: half the Web Mercator extent


def test_constants_by_hand():
    assert grid.WEB_MERCATOR_CRS == CRS.from_epsg(3857)
    assert grid.WGS84_CRS == CRS.from_epsg(4326)
    assert grid.EARTH_CIRCUMFERENCE == pytest.approx(40075016.68557849, abs=1e-6)
    assert grid.MERCATOR_HALF_EXTENT == pytest.approx(HALF, abs=1e-6)
    assert grid.MAX_ZOOM == 24


def test_512_px_mercator_set_by_hand():
    tms = grid.web_mercator_tms(512)
    matrix = tms.matrix(3)
    assert (matrix.tileWidth, matrix.tileHeight) == (512, 512)
    assert (matrix.matrixWidth, matrix.matrixHeight) == (8, 8)
    assert matrix.cellSize == pytest.approx(2 * HALF / (512 * 8))
    assert grid.tile_transform(tms, TileIndex(1, 2, 3))[:6] == pytest.approx(
        (2 * HALF / 4096, 0, -HALF + 2 * HALF / 8, 0, -2 * HALF / 4096, HALF - 2 * 2 * HALF / 8)
    )
    assert tms.maxzoom == 24


def test_mercator_resolution_for_ground_by_hand():
    assert grid.mercator_res_for_ground(10.0, 60.0) == pytest.approx(20.0)


@pytest.mark.parametrize("zoom", [0, 5, 12])
def test_an_exact_matrix_resolution_picks_that_matrix(zoom):
    tms = grid.web_mercator_tms()
    cell = 2 * HALF / (256 * 2**zoom)
    assert grid.zoom_for_resolution(tms, cell, 0, 20) == zoom
    # A hair coarser still picks it; a hair finer needs the next one.
    assert grid.zoom_for_resolution(tms, cell * 1.001, 0, 20) == zoom
    assert grid.zoom_for_resolution(tms, cell * 0.999, 0, 20) == zoom + 1


def test_zoom_choice_keeps_to_the_range():
    tms = grid.web_mercator_tms()
    assert grid.zoom_for_resolution(tms, 1e9, 3, 9) == 3
    assert grid.zoom_for_resolution(tms, 1e-3, 3, 9) == 9
    # Exactly zoom 10's cell: still 9, the finest of the range, never a zoom past it.
    assert grid.zoom_for_resolution(tms, 2 * HALF / (256 * 2**10), 3, 9) == 9


def _mercator_bbox(z: int, col0: float, row0: float, col1: float, row1: float) -> BBox:
    span = 2 * HALF / 2**z
    return BBox(-HALF + col0 * span, HALF - row1 * span, -HALF + col1 * span, HALF - row0 * span)


def test_a_bbox_on_tile_edges_takes_no_neighbour():
    tms = grid.web_mercator_tms()
    cols, rows = grid.tile_range(tms, _mercator_bbox(4, 3, 5, 6, 7), 4)
    assert (cols, rows) == (range(3, 6), range(5, 7))


def test_a_bbox_inside_a_tile_takes_that_tile():
    tms = grid.web_mercator_tms()
    cols, rows = grid.tile_range(tms, _mercator_bbox(4, 3.25, 5.25, 3.75, 5.75), 4)
    assert (cols, rows) == (range(3, 4), range(5, 6))


def test_tile_range_is_clamped_to_the_matrix():
    tms = grid.web_mercator_tms()
    cols, rows = grid.tile_range(tms, BBox(-3 * HALF, -3 * HALF, 3 * HALF, 3 * HALF), 2)
    assert (cols, rows) == (range(0, 4), range(0, 4))
    assert list(grid.tiles_for_bbox(tms, _mercator_bbox(2, 1.5, 2.5, 2.5, 3.5), 2)) == [
        TileIndex(1, 2, 2),
        TileIndex(2, 2, 2),
        TileIndex(1, 3, 2),
        TileIndex(2, 3, 2),
    ]


def _bottom_left_set() -> morecantile.TileMatrixSet:
    """Two matrices of 100 m cells in EPSG:2056, origin (2480000, 1070000) bottom-left."""
    matrices = [
        {
            "id": str(z),
            "scaleDenominator": cell / 0.28e-3,
            "cellSize": cell,
            "cornerOfOrigin": "bottomLeft",
            "pointOfOrigin": [2480000.0, 1070000.0],
            "tileWidth": 256,
            "tileHeight": 256,
            "matrixWidth": width,
            "matrixHeight": height,
        }
        for z, (cell, width, height) in enumerate([(100.0, 13, 9), (50.0, 26, 18)])
    ]
    return morecantile.TileMatrixSet.model_validate(
        {"id": "BL", "crs": "http://www.opengis.net/def/crs/EPSG/0/2056", "tileMatrices": matrices}
    )


def test_bottom_left_rows_count_up_by_hand():
    tms = _bottom_left_set()
    span = 50.0 * 256
    # Rows 2..3 and cols 4..5 (edges a quarter tile inside), counted up from the south.
    bbox = BBox(
        2480000 + 4.25 * span, 1070000 + 2.25 * span, 2480000 + 5.75 * span, 1070000 + 3.75 * span
    )
    assert grid.tile_range(tms, bbox, 1) == (range(4, 6), range(2, 4))
    left, top = 2480000 + 4 * span, 1070000 + 3 * span  # row 2's top is 3 tiles up
    assert grid.tile_transform(tms, TileIndex(4, 2, 1))[:6] == pytest.approx(
        (50.0, 0, left, 0, -50.0, top)
    )


def test_latitude_first_origin_by_hand():
    tms = morecantile.tms.get("WGS1984Quad")  # EPSG:4326, lat,lon: origin (90, -180)
    assert tms.matrix(1).pointOfOrigin[0] == 90
    assert grid.tile_transform(tms, TileIndex(1, 0, 1))[:6] == pytest.approx(
        (90 / 256, 0, -90.0, 0, -90 / 256, 90.0)
    )
    assert grid.tile_range(tms, BBox(-100.0, 10.0, -80.0, 20.0), 1) == (range(0, 2), range(0, 1))


def test_point_grid_by_hand():
    bbox, transform = grid.point_grid(1000.0, 2000.0, 2.0, 30, 10)
    assert bbox == pytest.approx((970.0, 1990.0, 1030.0, 2010.0))
    assert transform[:6] == pytest.approx((2.0, 0, 970.0, 0, -2.0, 2010.0))


def test_ground_resolution_at_60_degrees():
    assert grid.ground_resolution(0, 60.0) == pytest.approx(2 * math.pi * 6378137 / 512)


@pytest.mark.parametrize(
    ("size", "limit", "cuts"),
    [
        (1000, 400, [0, 333, 667, 1000]),  # 3 parts, cut on rounded thirds
        (800, 400, [0, 400, 800]),
        (5, 4096, [0, 5]),
    ],
)
def test_split_request_by_hand(size, limit, cuts):
    parts = split_request(size, 300, limit, 200)
    xs = [0, *sorted({c + w for c, _, w, _ in parts})]
    ys = [0, *sorted({r + h for _, r, _, h in parts})]
    assert xs == cuts
    assert ys == [0, 150, 300]
    # Row by row: the first part of the second row starts at column 0, row 150.
    assert parts[len(cuts) - 1][:2] == (0, 150)
    assert len(parts) == (len(cuts) - 1) * 2


def _wide_tiles(corner: str, origin: list[float]) -> morecantile.TileMatrixSet:
    """One matrix of 512 x 256 px tiles of 10 m cells, 20 x 40 tiles."""
    matrix = {
        "id": "0",
        "scaleDenominator": 10 / 0.28e-3,
        "cellSize": 10.0,
        "cornerOfOrigin": corner,
        "pointOfOrigin": origin,
        "tileWidth": 512,
        "tileHeight": 256,
        "matrixWidth": 20,
        "matrixHeight": 40,
    }
    crs = "http://www.opengis.net/def/crs/EPSG/0/2056"
    return morecantile.TileMatrixSet.model_validate(
        {"id": "Wide", "crs": crs, "tileMatrices": [matrix]}
    )


def test_non_square_tiles_bottom_left_by_hand():
    # Origin (0, 0) bottom-left: tile (3, 2) spans x 15360..20480, y 5120..7680.
    tms = _wide_tiles("bottomLeft", [0.0, 0.0])
    assert grid.tile_transform(tms, TileIndex(3, 2, 0))[:6] == pytest.approx(
        (10.0, 0, 3 * 5120.0, 0, -10.0, 3 * 2560.0)
    )
    assert grid.tile_range(tms, BBox(16000.0, 5500.0, 17000.0, 7000.0), 0) == (
        range(3, 4),
        range(2, 3),
    )
    # Edges exactly on tile boundaries take no neighbouring row or column.
    assert grid.tile_range(tms, BBox(15360.0, 5120.0, 20480.0, 7680.0), 0) == (
        range(3, 4),
        range(2, 3),
    )


def test_non_square_tiles_by_hand():
    # Origin (0, 1000000) top-left: a tile spans 5120 m east and 2560 m south.
    tms = _wide_tiles("topLeft", [0.0, 1000000.0])
    # x 6000..9000 is in columns 1 (5120..10240); y 1000000 - 6000..-3000 in rows 1..2.
    bbox = BBox(6000.0, 1000000.0 - 6000.0, 9000.0, 1000000.0 - 3000.0)
    assert grid.tile_range(tms, bbox, 0) == (range(1, 2), range(1, 3))
    assert grid.tile_transform(tms, TileIndex(3, 2, 0))[:6] == pytest.approx(
        (10.0, 0, 3 * 5120.0, 0, -10.0, 1000000.0 - 2 * 2560.0)
    )
    # The whole set and more: clamped to 20 columns and 40 rows (a matrix taller than wide).
    everything = BBox(-1e6, -1e6, 1e6, 2e6)
    assert grid.tile_range(tms, everything, 0) == (range(0, 20), range(0, 40))
