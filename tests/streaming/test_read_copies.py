"""The read path's shortcuts give the pixels of the long way, bit for bit.

- A resize that only crops (scale 1, whole-pixel offsets: a window at the image's own
  resolution) is a view of the canvas: compared with Pillow's own resize, every filter,
  opaque and translucent canvases.
- A read lying inside the AOIs skips the mask: compared with rasterizing the AOIs.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine

from streaming.aoi import parse_aois
from streaming.image import _inside_aois, _masked, aoi_mask
from streaming.layout import project
from streaming.mosaic import PIL_FILTERS, Grid, resize

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


@pytest.mark.parametrize("opaque", [True, False])
@pytest.mark.parametrize("resampling", list(PIL_FILTERS))
@pytest.mark.parametrize("box", [(7, 3, 57, 73), (0, 0, 96, 80), (0, 5, 96, 80), (95, 79, 96, 80)])
def test_a_crop_is_pillows_resize_without_the_work(opaque, resampling, box):
    pixels = canvas(opaque)
    left, top, right, bottom = box
    # float noise on the grid (as a transform product gives) must not break the shortcut
    transform = CANVAS.transform * Affine.translation(left + 1e-9, top - 1e-9)
    dst = Grid(MERCATOR, transform, right - left, bottom - top)
    got = resize(pixels, CANVAS, dst, resampling)
    assert got is not None and got.shape == (dst.height, dst.width, 4)
    np.testing.assert_array_equal(got, pillow(pixels, dst, box, resampling))
    if opaque:  # no copy: a view of the canvas
        assert np.shares_memory(got, pixels)


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


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [
        (6.605, 46.535, True),  # in the ring
        (6.5995, 46.535, False),  # across the west edge
        (6.618, 46.525, False),  # reaches into the hole
        (6.70, 46.60, False),  # outside
    ],
)
def test_the_mask_is_skipped_only_where_every_pixel_is_inside(lon, lat, inside):
    output = grid_at(lon, lat)
    mask = aoi_mask(AOIS, output)
    assert _inside_aois(AOIS, output) is inside
    assert bool(mask.all()) is inside and bool(mask.any()) is (lon < 6.7)
    rgba = np.full((4, output.height, output.width), 200, dtype=np.uint8)
    rgba.flags.writeable = False  # as a resampled read comes
    masked = _masked(rgba, AOIS, output)
    assert masked.flags.writeable
    np.testing.assert_array_equal(masked, np.where(mask, 200, 0)[None].repeat(4, 0))


def test_a_rotated_grid_is_always_masked():
    output = grid_at(6.605, 46.535)
    rotated = Grid(MERCATOR, output.transform * Affine.rotation(10), 64, 64)
    assert shapely_covers(output) and not _inside_aois(AOIS, rotated)


def shapely_covers(output: Grid) -> bool:
    import shapely

    left, top = output.transform * (0, 0)
    right, bottom = output.transform * (output.width, output.height)
    return bool(shapely.covers(project(AOIS, MERCATOR), shapely.box(left, bottom, right, top)))
