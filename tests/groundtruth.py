"""The known raster every fake upstream serves, and the pixel oracle the tests compare with.

The pattern mixes short sine waves (periods of 37 and 53 px along x and y) with smooth
random blobs, so a shift of one pixel, a flip or a swapped axis shows up as a large error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine, from_origin
from rasterio.warp import reproject

from streaming.mosaic import Grid

# Lausanne, Switzerland: far enough from the equator that the Mercator scale factor matters.
CENTER_LAT, CENTER_LON = 46.52, 6.63
CENTER_X, CENTER_Y = Transformer.from_crs(4326, 3857, always_xy=True).transform(
    CENTER_LON, CENTER_LAT
)
GT_RES = 4.777314267823516  # Web Mercator zoom 15 pixel size
GT_SIZE = 2048
MERCATOR = CRS.from_epsg(3857)


def preview_grid(lat: float, lon: float, resolution: float, size: int) -> Grid:
    """The grid a preview at lat/lon must land on, from first principles (not the product's code).

    A ``size`` px square in Web Mercator centred on the point, whose pixels measure
    ``resolution`` metres on the ground there: Mercator stretches by 1/cos(lat).
    """
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    res = resolution / math.cos(math.radians(lat))
    half = res * size / 2
    return Grid(MERCATOR, Affine(res, 0.0, x - half, 0.0, -res, y + half), size, size)


def envelope(grid: Grid, crs: CRS, samples: int = 64) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in ``crs`` of ``grid``'s outline, densely sampled."""
    t = np.linspace(0.0, 1.0, samples + 1)
    cols = np.concatenate([t, np.ones_like(t), t, np.zeros_like(t)]) * grid.width
    rows = np.concatenate([np.zeros_like(t), t, np.ones_like(t), t]) * grid.height
    a, _, c, _, e, f = grid.transform[:6]
    xs, ys = c + cols * a, f + rows * e
    x, y = Transformer.from_crs(grid.crs, crs, always_xy=True).transform(xs, ys)
    return float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))


def tiles_by_hand(
    bbox: tuple[float, float, float, float],
    origin: tuple[float, float],
    cell: float,
    matrix: tuple[int, int],
    *,
    tile: int = 256,
    bottom_left: bool = False,
) -> set[tuple[int, int]]:
    """(col, row) of every tile of one matrix that ``bbox`` touches, from its definition.

    ``origin`` is (x, y) of the matrix corner of origin, ``matrix`` its (width, height) in
    tiles. Rows count down from a top-left origin and up from a bottom-left one. Edges
    falling on a tile boundary are refused: the expected set would hinge on a tolerance.
    """
    left, bottom, right, top = bbox
    span = cell * tile
    ox, oy = origin
    x0, x1 = (left - ox) / span, (right - ox) / span
    if bottom_left:
        y0, y1 = (bottom - oy) / span, (top - oy) / span
    else:
        y0, y1 = (oy - top) / span, (oy - bottom) / span
    for v in (x0, x1, y0, y1):
        assert abs(v - round(v)) > 1e-3, f"bbox edge on a tile boundary ({v})"
    cols = range(max(math.floor(x0), 0), min(math.floor(x1), matrix[0] - 1) + 1)
    rows = range(max(math.floor(y0), 0), min(math.floor(y1), matrix[1] - 1) + 1)
    return {(c, r) for c in cols for r in rows}


def write_ground_truth(path: Path) -> Path:
    """Write the ground-truth RGB GeoTIFF (EPSG:3857) to ``path``."""
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:GT_SIZE, 0:GT_SIZE].astype(np.float32)
    blobs = []
    for _ in range(3):
        coarse = rng.random((GT_SIZE // 64 + 1, GT_SIZE // 64 + 1)).astype(np.float32)
        blobs.append(_upsample(coarse, GT_SIZE))
    red = 110 + 60 * np.sin(2 * np.pi * xx / 37) + 80 * (blobs[0] - 0.5)
    green = 110 + 60 * np.sin(2 * np.pi * yy / 53) + 80 * (blobs[1] - 0.5)
    blue = 40 + 200 * blobs[2]
    data = np.clip(np.stack([red, green, blue]), 1, 255).astype(np.uint8)
    left = CENTER_X - GT_RES * GT_SIZE / 2
    top = CENTER_Y + GT_RES * GT_SIZE / 2
    profile = {
        "driver": "GTiff",
        "width": GT_SIZE,
        "height": GT_SIZE,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": from_origin(left, top, GT_RES, GT_RES),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.build_overviews([2, 4, 8, 16], Resampling.average)
    return path


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a small random field into smooth blobs."""
    n = coarse.shape[0] - 1
    pos = np.linspace(0, n, size, endpoint=False)
    i = pos.astype(int)
    f = pos - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def expected(path: Path, grid: Grid) -> np.ndarray:
    """The ground truth warped onto ``grid`` by rasterio: the oracle, (3, h, w) uint8."""
    out = np.zeros((3, grid.height, grid.width), dtype=np.uint8)
    with rasterio.open(path) as src:
        reproject(
            source=rasterio.band(src, [1, 2, 3]),
            destination=out,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling.bilinear,
        )
    return out


def best_shift(actual: np.ndarray, oracle: np.ndarray, reach: int = 3) -> tuple[int, int]:
    """The (dx, dy) in pixels, within ``reach``, that best aligns ``actual`` on ``oracle``."""
    scores = {}
    m = reach
    core = actual[:, m:-m, m:-m].astype(np.int16)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = oracle[
                :, m + dy : oracle.shape[1] - m + dy, m + dx : oracle.shape[2] - m + dx
            ]
            scores[(dx, dy)] = float(np.abs(core - shifted).mean())
    return min(scores, key=lambda k: scores[k])


def assert_pixels_match(
    actual_rgba: np.ndarray, oracle: np.ndarray, tolerance: float = 8.0
) -> None:
    """Assert ``actual`` lands where the oracle has the ground truth: no shift, small error."""
    actual = actual_rgba[:3]
    assert actual.shape == oracle.shape, (actual.shape, oracle.shape)
    if actual_rgba.shape[0] == 4:
        assert actual_rgba[3].min() > 0, "part of the output has no data"
    mae = float(np.abs(actual.astype(np.int16) - oracle.astype(np.int16)).mean())
    assert best_shift(actual, oracle) == (0, 0), f"pixels are misplaced (mae {mae:.1f})"
    assert mae < tolerance, f"mean absolute error {mae:.1f} >= {tolerance}"
