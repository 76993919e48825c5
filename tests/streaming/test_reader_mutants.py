"""Mosaic and reader arithmetic at its edges, by hand: the cases mutation testing found unguarded.

Expected canvases are built here pixel by pixel from the pieces' offsets, expected grids
from the request's own numbers, expected pixels from rasterio and the ground truth; see
docs/testing.md for the mutants these kill.
"""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine

from streaming.encode import encode_png
from streaming.mosaic import Grid, Piece, compose
from streaming.plan import split_request
from streaming.reader import SourceReader
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
)

MERCATOR, WGS84 = CRS.from_epsg(3857), CRS.from_epsg(4326)


def _image(seed: int, width: int, height: int) -> np.ndarray:
    """An opaque RGBA image of distinct, non-uniform colours (never 'blank')."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(1, 255, size=(3, height, width), dtype=np.uint8)
    return np.concatenate([rgb, np.full((1, height, width), 255, dtype=np.uint8)])


def _by_hand(shape: tuple[int, int], placed: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """The canvas ``placed`` (image, col_off, row_off) make, one pixel at a time."""
    height, width = shape
    canvas = np.zeros((4, height, width), dtype=np.uint8)
    for image, col_off, row_off in placed:
        for r in range(image.shape[1]):
            for c in range(image.shape[2]):
                if 0 <= r + row_off < height and 0 <= c + col_off < width:
                    canvas[:, r + row_off, c + col_off] = image[:, r, c]
    return canvas


def test_pieces_land_at_their_offsets_clipped_to_the_canvas():
    # A 10 x 8 canvas; 4 x 3 pieces inside, across each edge, and wholly outside; one
    # 2 x 6 piece taller than wide (its size check must not take its width for height).
    grid = Grid(MERCATOR, Affine(10.0, 0, 0.0, 0, -10.0, 80.0), 10, 8)
    offsets = [(1, 1), (-2, 4), (8, -1), (7, 6), (-4, -3), (10, 2), (3, 8), (-5, 0), (0, -9)]
    placed = [(_image(k, 4, 3), col, row) for k, (col, row) in enumerate(offsets)]
    placed.append((_image(99, 2, 6), 5, 2))
    pieces = [
        Piece(encode_png(im), col, row, im.shape[2], im.shape[1], f"p{k}")
        for k, (im, col, row) in enumerate(placed)
    ]
    pieces.append(Piece(None, 5, 1, 4, 3, "nothing there"))
    result = compose(pieces, grid, grid, max_pixels=10**6)
    assert (result.missing, result.blank) == (1, 0)
    np.testing.assert_array_equal(result.rgba, _by_hand((8, 10), placed))


def test_blank_pieces_are_counted():
    grid = Grid(MERCATOR, Affine(10.0, 0, 0.0, 0, -10.0, 30.0), 6, 3)
    grey = np.full((4, 3, 3), 200, dtype=np.uint8)
    clear = np.zeros((4, 3, 3), dtype=np.uint8)
    pieces = [
        Piece(encode_png(grey), 0, 0, 3, 3, "grey"),
        Piece(encode_png(clear), 3, 0, 3, 3, "clear"),
    ]
    result = compose(pieces, grid, grid, max_pixels=10**6)
    assert (result.missing, result.blank) == (0, 2)


def test_warp_onto_a_grid_one_pixel_east():
    # The output starts one 10 m column east of the canvas: output column c is canvas
    # column c + 1, and its last column, past the canvas, has no data (alpha 0).
    canvas = Grid(MERCATOR, Affine(10.0, 0, 0.0, 0, -10.0, 50.0), 6, 5)
    output = Grid(MERCATOR, Affine(10.0, 0, 10.0, 0, -10.0, 50.0), 6, 5)
    image = _image(7, 6, 5)
    pieces = [Piece(encode_png(image), 0, 0, 6, 5, "all")]
    result = compose(pieces, canvas, output, max_pixels=10**6, resampling=Resampling.nearest)
    np.testing.assert_array_equal(result.rgba[:, :, :5], image[:, :, 1:])
    assert not result.rgba[:, :, 5].any()


# Sets of non-square tiles (512 x 256 or 256 x 512 px) of 10 m cells in Web Mercator, their
# corner of origin bottom-left 3 km south-west of the ground truth's centre, rows counting up.
CELL = 10.0
ORIGIN = (CENTER_X - 3000.0, CENTER_Y - 3000.0)


def _bottom_left_set(tile_w: int, tile_h: int) -> morecantile.TileMatrixSet:
    matrix = {
        "id": "0",
        "scaleDenominator": CELL / 0.28e-3,
        "cellSize": CELL,
        "cornerOfOrigin": "bottomLeft",
        "pointOfOrigin": list(ORIGIN),
        "tileWidth": tile_w,
        "tileHeight": tile_h,
        "matrixWidth": 2,
        "matrixHeight": 3,
    }
    crs = "http://www.opengis.net/def/crs/EPSG/0/3857"
    return morecantile.TileMatrixSet.model_validate(
        {"id": f"BL{tile_w}x{tile_h}", "crs": crs, "tileMatrices": [matrix]}
    )


class HandTiles:
    """Tiles of a bottom-left set, rendered from the ground truth on grids by hand."""

    def __init__(self, ground_truth: Path, tile_w: int = 512, tile_h: int = 256) -> None:
        self.ground_truth, self.tms = ground_truth, _bottom_left_set(tile_w, tile_h)
        self.tile_w, self.tile_h = tile_w, tile_h
        self.min_zoom = self.max_zoom = 0
        self.fetched: list[tuple[int, int]] = []

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        assert tile.z == 0 and 0 <= tile.x < 2 and 0 <= tile.y < 3, tile
        self.fetched.append((tile.x, tile.y))
        w, h = self.tile_w, self.tile_h
        left = ORIGIN[0] + tile.x * w * CELL
        top = ORIGIN[1] + (tile.y + 1) * h * CELL  # row 0 is the southernmost
        tile_grid = Grid(MERCATOR, Affine(CELL, 0, left, 0, -CELL, top), w, h)
        rgb = expected(self.ground_truth, tile_grid)
        alpha = np.full((1, h, w), 255, dtype=np.uint8)
        return FetchedImage(encode_png(np.concatenate([rgb, alpha])), "image/png")


@pytest.mark.parametrize(
    ("tile_w", "tile_h", "tiles"),
    [
        # Columns of 5120 m: column 0; rows of 2560 m: rows 0..2.
        (512, 256, [(0, 0), (0, 1), (0, 2)]),
        # Columns of 2560 m: columns 0..1; rows of 5120 m: rows 0..1.
        (256, 512, [(0, 0), (0, 1), (1, 0), (1, 1)]),
    ],
)
async def test_non_square_tiles_counted_up_from_a_bottom_left_origin(
    ground_truth, tile_w, tile_h, tiles
):
    # A 1000 m x 5000 m window from 2000 m east and 200 m north of the origin: it
    # reaches past the first 256 px of a tile on both axes, so a canvas sized with
    # the tile's width for its height (or the reverse) would cut it.
    source = HandTiles(ground_truth, tile_w, tile_h)
    left, bottom = ORIGIN[0] + 2000.0, ORIGIN[1] + 200.0
    output = Grid(MERCATOR, Affine(10.0, 0, left, 0, -10.0, bottom + 5000.0), 100, 500)
    result = await SourceReader(source).read(output, resampling=Resampling.nearest)
    assert sorted(source.fetched) == tiles
    assert result.zoom == 0 and result.requests == len(tiles)
    assert result.rgba[3].all()
    # The output's pixels are the tiles' pixels: nearest on the same 10 m lattice.
    np.testing.assert_array_equal(result.rgba[:3], expected(ground_truth, output))


class RecordingBBox:
    """A bbox source that records each request and answers it from the ground truth."""

    def __init__(self, ground_truth: Path, crs_list: list[CRS], max_size=(4096, 4096)):
        self.ground_truth, self.crs_list, self.max_size = ground_truth, crs_list, max_size
        self.requests: list[tuple[tuple[float, ...], CRS, int, int]] = []

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        self.requests.append((tuple(bbox), crs, width, height))
        left, bottom, right, top = bbox
        res_x, res_y = (right - left) / width, (top - bottom) / height
        part = Grid(crs, Affine(res_x, 0, left, 0, -res_y, top), width, height)
        rgb = expected(self.ground_truth, part)
        alpha = np.full((1, height, width), 255, dtype=np.uint8)
        return FetchedImage(encode_png(np.concatenate([rgb, alpha])), "image/png")


async def test_bbox_source_is_asked_in_the_output_crs_when_it_serves_it(ground_truth):
    source = RecordingBBox(ground_truth, [WGS84, MERCATOR])
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    result = await SourceReader(source).read(output)
    res = output.transform.a
    x0, y0 = output.transform.c, output.transform.f
    ((bbox, crs, width, height),) = source.requests
    assert (crs, width, height) == (MERCATOR, 256, 256)
    assert bbox == pytest.approx((x0, y0 - 256 * res, x0 + 256 * res, y0), abs=1e-6)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=3)


@pytest.mark.parametrize(
    "flip",
    [(1, -1), (1, 1), (-1, -1), (-1, 1)],
    ids=["north-up", "south-up", "east-west", "both"],
)
async def test_outputs_flipped_on_either_axis_get_the_same_pixels(ground_truth, flip):
    # The same 1000 m x 3000 m window, its rows or columns in reverse order: the same
    # 10 m lattice, so nearest resampling gives the oracle's pixels exactly.
    sx, sy = flip
    left, bottom, right, top = (
        CENTER_X - 2500.0,
        CENTER_Y - 2800.0,
        CENTER_X - 1500.0,
        CENTER_Y + 200.0,
    )
    x0, y0 = (left if sx > 0 else right), (bottom if sy > 0 else top)
    output = Grid(MERCATOR, Affine(sx * 10.0, 0, x0, 0, sy * 10.0, y0), 100, 300)
    source = HandTiles(ground_truth)
    result = await SourceReader(source).read(output, resampling=Resampling.nearest)
    assert sorted(source.fetched) == [(0, 0), (0, 1)]  # y 200..3200 m above the origin
    assert result.rgba[3].all()
    np.testing.assert_array_equal(result.rgba[:3], expected(ground_truth, output))
    # Split under a max size of 60 x 70 px: 2 x 5 parts of 50 x 60 px (500 m x 600 m),
    # row by row from the top-left, whatever the output's orientation.
    bboxes = RecordingBBox(ground_truth, [MERCATOR], max_size=(60, 70))
    result = await SourceReader(bboxes).read(output, resampling=Resampling.nearest)
    parts = [
        ((left + 500 * i, top - 600 * (j + 1), left + 500 * (i + 1), top - 600 * j), 50, 60)
        for j in range(5)
        for i in range(2)
    ]
    assert [(b, w, h) for b, _, w, h in bboxes.requests] == [
        (pytest.approx(b, abs=1e-6), w, h) for b, w, h in parts
    ]
    np.testing.assert_array_equal(result.rgba[:3], expected(ground_truth, output))


async def test_a_request_in_a_rotated_crs_is_as_fine_as_the_output(ground_truth):
    # UTM 31N's grid north turns about 2.6 deg from Mercator's at 6.63 E, 46.52 N, so
    # the request's envelope is some 4% wider and taller than the output (200 x 120 px
    # of 10 m on the ground): keeping the output's pixel count would make each request
    # pixel ~4% coarser. UTM is within 0.1% of ground scale here: each request pixel
    # must measure at most 10 m (and the output's 2000 m x 1200 m need >= 200 x 120).
    utm = CRS.from_epsg(32631)
    source = RecordingBBox(ground_truth, [utm])
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=200)
    output = Grid(output.crs, output.transform, 200, 120)
    result = await SourceReader(source).read(output)
    ((bbox, crs, width, height),) = source.requests
    left, bottom, right, top = bbox
    assert crs == utm
    assert (right - left) / width <= 10.0 * 1.001
    assert (top - bottom) / height <= 10.0 * 1.001
    assert (right - left) / width >= 9.9 and (top - bottom) / height >= 9.9  # not finer
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=6)


def test_split_rows_cut_on_rounded_thirds():
    # 1000 rows under a max of 400: 3 bands cut at 333.3 -> 333 and 666.7 -> 667.
    parts = split_request(300, 1000, 200, 400)
    assert [(row, h) for col, row, _, h in parts if col == 0] == [(0, 333), (333, 334), (667, 333)]
    assert [(col, w) for col, row, w, _ in parts if row == 0] == [(0, 150), (150, 150)]
