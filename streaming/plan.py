"""What a read fetches, worked out before anything is fetched: the matrix and its tiles,
or the request grid and its parts. Reads (:mod:`streaming.reader`) and estimates
(:meth:`streaming.image.StreamingImage.estimate`) share these plans.
"""

from __future__ import annotations

import math
from functools import lru_cache

import attrs
from morecantile import TileMatrixSet
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from streaming import grid
from streaming.mosaic import Grid
from streaming.sources import BBoxSource, TileSource
from streaming.types import BBox, TileIndex

# A request may hold up to this many times the output's pixels (to be fine on both axes).
MAX_GROWTH = 4.0
RES_SLACK = 1e-6  # float noise must not add a column


@attrs.frozen
class TileReadPlan:
    """What a read of a tile source fetches: the matrix and its tiles, row by row."""

    zoom: int
    bbox: BBox  # the output's bounds in the TMS CRS
    tiles: list[TileIndex]


@attrs.frozen
class BBoxReadPlan:
    """What a read of a bbox source fetches: one request grid, split into parts."""

    crs: CRS  # the CRS requested (the output's when the source offers it)
    bbox: BBox  # in ``crs``
    width: int
    height: int
    parts: list[tuple[int, int, int, int]]  # (col_off, row_off, width, height) of each request


def plan_tiles(source: TileSource, output: Grid, zoom: int | None = None) -> TileReadPlan:
    """The tiles a read of ``output`` fetches; the one plan reads and estimates share.

    ``zoom`` forces a matrix; by default the coarsest at least as fine as the output.
    """
    bbox = _tms_bbox(source.tms, output)
    if zoom is None:
        zoom = _zoom(source, bbox, output)
    return TileReadPlan(zoom, bbox, list(grid.tiles_for_bbox(source.tms, bbox, zoom)))


def plan_bbox(source: BBoxSource, output: Grid) -> BBoxReadPlan:
    """The requests a read of ``output`` sends; the one plan reads and estimates share."""
    crs = output.crs if output.crs in source.crs_list else source.crs_list[0]
    bbox = BBox(*transform_bounds(output.crs, crs, *_bounds(output), densify_pts=21))
    width, height = output.width, output.height
    if crs != output.crs:
        width, height = request_size(output, crs, bbox)
    return BBoxReadPlan(crs, bbox, width, height, split_request(width, height, *source.max_size))


def tile_zoom(source: TileSource, output: Grid) -> int:
    """The matrix a read of ``output`` uses: the coarsest at least as fine as the output."""
    return _zoom(source, _tms_bbox(source.tms, output), output)


def _zoom(source: TileSource, bbox: BBox, output: Grid) -> int:
    res = min(bbox.width / output.width, bbox.height / output.height)
    return grid.zoom_for_resolution(source.tms, res, source.min_zoom, source.max_zoom)


def _tms_bbox(tms: TileMatrixSet, output: Grid) -> BBox:
    crs = tms.rasterio_crs
    return BBox(*transform_bounds(output.crs, crs, *_bounds(output), densify_pts=21))


def request_size(output: Grid, crs: CRS, bbox: BBox) -> tuple[int, int]:
    """Columns and rows that sample ``bbox`` (in ``crs``) at least as finely as ``output``.

    One output pixel step along x and along y, at the centre, is mapped into ``crs``;
    each request axis takes the finest step that mostly runs along it. In EPSG:4326 at
    46 deg N a square ground pixel is 1.44 times wider than tall in degrees, so a
    request keeping the output's pixel count would be that much coarser north-south.
    """
    to_crs = _transformer(output.crs, crs)
    col, row = output.width / 2, output.height / 2
    x0, y0 = to_crs.transform(*(output.transform * (col, row)))
    vectors = []
    for dc, dr in ((1, 0), (0, 1)):
        x, y = to_crs.transform(*(output.transform * (col + dc, row + dr)))
        vectors.append((x - x0, y - y0))
    res_x = _finest_along(vectors, 0) or bbox.width / output.width
    res_y = _finest_along(vectors, 1) or bbox.height / output.height
    width = max(1, math.ceil(bbox.width / res_x - RES_SLACK))
    height = max(1, math.ceil(bbox.height / res_y - RES_SLACK))
    growth = width * height / (output.width * output.height)
    if growth > MAX_GROWTH:  # near a pole or a singular transform: keep memory bounded
        shrink = math.sqrt(MAX_GROWTH / growth)
        width, height = max(1, round(width * shrink)), max(1, round(height * shrink))
    return width, height


@lru_cache(maxsize=16)
def _transformer(src: CRS, dst: CRS) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _finest_along(vectors: list[tuple[float, float]], axis: int) -> float | None:
    """Smallest component along ``axis`` of the vectors that mostly run along it."""
    lengths = [
        abs(v[axis])
        for v in vectors
        if math.isfinite(v[axis]) and abs(v[axis]) >= 0.5 * math.hypot(*v) > 0
    ]
    return min(lengths) if lengths else None


def split_request(
    width: int, height: int, max_width: int, max_height: int
) -> list[tuple[int, int, int, int]]:
    """Split a ``width`` x ``height`` request into parts within the max size.

    Returns (col_off, row_off, width, height) per part, row by row. Parts cut on whole
    pixels, so stitched parts sit exactly on the full request's grid.
    """
    nx, ny = math.ceil(width / max_width), math.ceil(height / max_height)
    xs = [round(i * width / nx) for i in range(nx + 1)]
    ys = [round(j * height / ny) for j in range(ny + 1)]
    return [
        (xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for j in range(ny) for i in range(nx)
    ]


def part_bbox(canvas: Grid, part: tuple[int, int, int, int]) -> BBox:
    """The bbox of one part (col_off, row_off, width, height) of a request grid."""
    col, row, width, height = part
    left, top = canvas.transform @ (col, row)
    right, bottom = canvas.transform @ (col + width, row + height)
    return BBox(left, bottom, right, top)


def _bounds(g: Grid) -> BBox:
    left, top = g.transform @ (0, 0)
    right, bottom = g.transform @ (g.width, g.height)
    return BBox(min(left, right), min(bottom, top), max(left, right), max(bottom, top))
