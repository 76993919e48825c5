"""Mosaic and reader arithmetic at its edges, by hand: the cases mutation testing found unguarded.

Expected canvases are built here pixel by pixel from the pieces' offsets, expected grids
from the request's own numbers, expected pixels from rasterio and the ground truth; see
docs/testing.md for the mutants these kill.
"""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine

from streaming.encode import encode_png
from streaming.mosaic import Grid, Piece, compose

MERCATOR = CRS.from_epsg(3857)


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
