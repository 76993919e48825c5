"""The read path's shortcuts give the pixels of the long way, bit for bit.

- A read that only crops (scale 1, whole-pixel offsets: a window at the image's own
  resolution) pastes its pieces straight into the output, interleaved or band-first:
  the canvas's pixels, untouched, with no canvas made.
- Decoded pieces are kept in the layout of the read that decoded them, and a read of the
  other layout still gets the same pixels.
- The AOI mask, drawn only in the blocks an AOI edge crosses: compared with the mask
  of the whole grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine

import streaming.mosaic
from streaming.aoi import parse_aois
from streaming.codecs import encode_png, is_interleaved
from streaming.decoded import DecodedTiles
from streaming.mask import aoi_mask
from streaming.mask import mask_outside as _masked
from streaming.mosaic import (
    PIL_FILTERS,
    Grid,
    Piece,
    compose,
    crop_offsets,
    interleaved_zeros,
    resize,
)

MERCATOR = CRS.from_epsg(3857)
RES = 4.77731426782
CANVAS = Grid(MERCATOR, Affine(RES, 0, 736000.0, 0, -RES, 5866000.0), 96, 80)


def canvas(opaque: bool) -> np.ndarray:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (CANVAS.height, CANVAS.width, 4), dtype=np.uint8)
    if opaque:
        pixels[..., 3] = 255
    else:  # opaque, transparent and translucent rows
        pixels[:20, :, 3] = 255
        pixels[20:30, :, 3] = 0
    return pixels


def pillow(pixels: np.ndarray, dst: Grid, box: tuple[int, int, int, int], r: Resampling):
    """What Pillow's resize makes of the box: the oracle."""
    image = Image.fromarray(pixels, "RGBA")
    return np.asarray(image.resize((dst.width, dst.height), PIL_FILTERS[r], box=box))


def tiled(pixels: np.ndarray, size: int = 32) -> list[Piece]:
    """The canvas cut into lossless PNG pieces of ``size`` px (ragged at the edges)."""
    pieces = []
    for row in range(0, pixels.shape[0], size):
        for col in range(0, pixels.shape[1], size):
            part = np.ascontiguousarray(pixels[row : row + size, col : col + size])
            h, w = part.shape[:2]
            pieces.append(Piece(encode_png(part), col, row, w, h, f"piece {col},{row}"))
    return pieces


def planar_zeros(height: int, width: int) -> np.ndarray:
    return np.zeros((4, height, width), dtype=np.uint8)


@pytest.mark.parametrize("opaque", [True, False])
@pytest.mark.parametrize("allocate", [None, planar_zeros], ids=["interleaved", "band-first"])
@pytest.mark.parametrize("box", [(7, 3, 57, 73), (0, 0, 96, 80), (0, 5, 96, 80), (95, 79, 96, 80)])
def test_a_crop_is_the_canvas_pixels_pasted_straight_into_the_output(opaque, allocate, box):
    pixels = canvas(opaque)
    left, top, right, bottom = box
    # float noise on the grid (as a transform product gives) must not break the shortcut
    transform = CANVAS.transform * Affine.translation(left + 1e-9, top - 1e-9)
    dst = Grid(MERCATOR, transform, right - left, bottom - top)
    made = []

    def recording(height: int, width: int) -> np.ndarray:
        made.append((height, width))
        return (allocate or interleaved_zeros)(height, width)

    got = compose(tiled(pixels), CANVAS, dst, max_pixels=1 << 20, allocate=recording).rgba
    assert made == [(dst.height, dst.width)]  # the output only: no canvas
    # the decoded pixels, untouched (translucent ones too: nothing is resampled)
    np.testing.assert_array_equal(got, pixels[top:bottom, left:right].transpose(2, 0, 1))


def test_a_band_first_read_keeps_band_first_pieces_that_the_next_pastes_without_decoding(
    monkeypatch,
):
    pixels = canvas(False)
    dst = Grid(MERCATOR, CANVAS.transform * Affine.translation(7, 3), 60, 70)
    pieces = tiled(pixels)
    memo = DecodedTiles().scoped("server")
    decoded = []
    real = streaming.mosaic.decode_pixels

    def counted(*args, **kwargs):
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming.mosaic, "decode_pixels", counted)
    want = pixels[3:73, 7:67].transpose(2, 0, 1)

    def read(allocate):
        decoded.clear()
        made = compose(pieces, CANVAS, dst, max_pixels=1 << 20, memo=memo, allocate=allocate)
        np.testing.assert_array_equal(made.rgba, want)
        return len(decoded)

    assert read(planar_zeros) == len(pieces)  # all decoded once
    kept = [memo.get(p.data, 1) for p in pieces]
    inside = [
        k
        for k, p in zip(kept, pieces, strict=True)
        if 7 <= p.col_off <= 67 - p.width and 3 <= p.row_off <= 73 - p.height
    ]
    assert all(k is not None for k in kept)
    assert inside and not any(is_interleaved(k[0]) for k in inside)  # planes: a memcpy paste
    assert read(planar_zeros) == 0  # the next band-first read decodes nothing
    # An interleaved read decodes the planes again (faster than scattering them), the same pixels.
    assert read(None) == len(inside)
    assert read(None) == 0


@pytest.mark.parametrize(
    ("shift", "scale", "size"),
    [
        ((7.5, 3), (1, 1), (50, 70)),  # half a pixel off
        ((7, 3), (1.01, 1), (50, 70)),  # scaled
        ((-1, 3), (1, 1), (50, 70)),  # reaching past the canvas
        ((50, 3), (1, 1), (50, 70)),
    ],
)
def test_only_whole_pixels_at_scale_one_inside_the_canvas_are_a_crop(shift, scale, size):
    transform = CANVAS.transform * Affine.translation(*shift) * Affine.scale(*scale)
    assert crop_offsets(CANVAS, Grid(MERCATOR, transform, *size)) is None
    other_crs = Grid(CRS.from_epsg(32632), CANVAS.transform, 10, 10)
    assert crop_offsets(CANVAS, other_crs) is None
    assert crop_offsets(CANVAS, CANVAS) == (0, 0)


@pytest.mark.parametrize(
    ("shift", "scale"),
    [((7.5, 3), (1, 1)), ((7, 3.5), (1, 1)), ((7, 3), (1.01, 1)), ((7, 3), (1, 0.99))],
)
def test_off_the_pixels_or_scaled_is_resampled_not_cropped(shift, scale):
    pixels = canvas(True)
    transform = CANVAS.transform * Affine.translation(*shift) * Affine.scale(*scale)
    dst = Grid(MERCATOR, transform, 50, 70)
    got = resize(pixels, CANVAS, dst, Resampling.bilinear)
    assert got is not None and not np.shares_memory(got, pixels)
    box = (shift[0], shift[1], shift[0] + 50 * scale[0], shift[1] + 70 * scale[1])
    np.testing.assert_array_equal(got, pillow(pixels, dst, box, Resampling.bilinear))  # type: ignore[arg-type]
    assert not np.array_equal(got, pixels[3:73, 7:57])  # it really was resampled


SQUARE = [[6.60, 46.50], [6.66, 46.50], [6.66, 46.54], [6.60, 46.54], [6.60, 46.50]]
HOLE = [[6.621, 46.513], [6.639, 46.513], [6.639, 46.527], [6.621, 46.527], [6.621, 46.513]]
AOIS = parse_aois({"type": "Polygon", "coordinates": [SQUARE, HOLE]})


def grid_at(lon: float, lat: float, size: int = 64, res: float = 10.0) -> Grid:
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    return Grid(MERCATOR, Affine(res, 0, x, 0, -res, y), size, size)


def full_mask(rgba: np.ndarray, output: Grid) -> np.ndarray:
    """The mask drawn over the whole grid at once: the oracle."""
    expected = rgba.copy()
    expected[:, ~aoi_mask(AOIS, output)] = 0
    return expected


@pytest.mark.parametrize(
    ("lon", "lat", "size", "res"),
    [
        (6.605, 46.535, 64, 10.0),  # inside the ring: nothing drawn
        (6.5995, 46.535, 64, 10.0),  # across the west edge
        (6.618, 46.525, 64, 10.0),  # reaches into the hole
        (6.70, 46.60, 64, 10.0),  # outside: all zeroed
        (6.595, 46.545, 700, 4.0),  # the AOI's north-west corner and its hole, many blocks
        (6.61, 46.53, 600, 1.7),  # the hole in the middle, edges crossing blocks
    ],
)
def test_the_mask_drawn_by_blocks_is_the_mask_of_the_whole_grid(lon, lat, size, res):
    output = grid_at(lon, lat, size, res)
    output = Grid(output.crs, output.transform, size, size - 37)  # not square, ragged blocks
    rng = np.random.default_rng(3)
    rgba = rng.integers(1, 256, (4, output.height, output.width), dtype=np.uint8)
    expected = full_mask(rgba, output)
    interleaved = rgba.transpose(1, 2, 0).copy().transpose(2, 0, 1)  # as a read comes
    rgba.flags.writeable = False  # as a resampled read comes
    masked = _masked(rgba, AOIS, output)
    assert masked.flags.writeable
    np.testing.assert_array_equal(masked, expected)
    # a view of interleaved pixels is masked a whole pixel (4 bytes) at a time, in place
    assert _masked(interleaved, AOIS, output) is interleaved
    np.testing.assert_array_equal(interleaved, expected)


def test_a_window_inside_the_aoi_draws_no_mask(monkeypatch):
    import streaming.mask

    def refuse(*args):
        raise AssertionError("no mask to draw")

    monkeypatch.setattr(streaming.mask, "aoi_mask", refuse)
    monkeypatch.setattr(streaming.mask, "_outside", refuse)
    rgba = np.full((4, 64, 64), 9, dtype=np.uint8)
    assert _masked(rgba, AOIS, grid_at(6.605, 46.535)) is rgba
    assert (rgba == 9).all()


def test_a_rotated_grid_is_masked_whole():
    output = grid_at(6.5995, 46.535)
    rotated = Grid(MERCATOR, output.transform * Affine.rotation(10), 64, 64)
    rgba = np.full((4, 64, 64), 9, dtype=np.uint8)
    np.testing.assert_array_equal(_masked(rgba.copy(), AOIS, rotated), full_mask(rgba, rotated))


def test_only_the_polygons_of_a_clip_are_rasterized():
    import shapely

    from streaming.mask import polygons as _polygons

    mixed = shapely.GeometryCollection(
        [
            shapely.box(0, 0, 1, 1),
            shapely.LineString([(2, 2), (3, 3)]),  # a clip along an edge leaves lines
            shapely.MultiPolygon([shapely.box(5, 5, 6, 6), shapely.box(7, 7, 8, 8)]),
            shapely.Point(9, 9),
        ]
    )
    assert shapely.equals(
        _polygons(mixed),
        shapely.union_all(
            [shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6), shapely.box(7, 7, 8, 8)]
        ),
    )
    for nothing in (
        shapely.Polygon(),
        shapely.GeometryCollection(),
        shapely.LineString([(0, 0), (1, 1)]),
    ):
        assert _polygons(nothing) is None


@settings(max_examples=200, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.booleans()))
def test_block_rectangles_cover_the_blocks_exactly_once(blocks):
    from streaming.mask import block_rectangles

    covered = np.zeros(blocks.shape, dtype=np.int8)
    for r0, r1, c0, c1 in block_rectangles(blocks):
        assert r0 < r1 and c0 < c1
        covered[r0:r1, c0:c1] += 1
    np.testing.assert_array_equal(covered, blocks.astype(np.int8))


def test_the_blocks_along_a_straight_edge_make_one_rectangle():
    from streaming.mask import block_rectangles

    blocks = np.zeros((8, 8), dtype=bool)
    blocks[0, :] = True  # the north edge of an AOI...
    blocks[:, 0] = True  # ...and its west edge: an L, two rasterizations, not 15
    assert sorted(block_rectangles(blocks)) == [(0, 1, 0, 8), (1, 8, 0, 1)]
