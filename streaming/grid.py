"""Tile-grid math: resolutions, zoom choice and tile ranges, for any morecantile TMS."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache

import morecantile
import pyproj
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from streaming.types import BBox, TileIndex

WEB_MERCATOR_CRS = CRS.from_epsg(3857)
WGS84_CRS = CRS.from_epsg(4326)
EARTH_CIRCUMFERENCE = 2 * math.pi * 6378137.0
MERCATOR_HALF_EXTENT = EARTH_CIRCUMFERENCE / 2
# Relative slack when comparing resolutions, so float noise never picks a finer zoom.
RES_TOLERANCE = 1e-6
MAX_ZOOM = 24  # the deepest matrix of morecantile's WebMercatorQuad


@cache
def web_mercator_tms(tile_size: int = 256) -> TileMatrixSet:
    """WebMercatorQuad with ``tile_size`` px tiles, built once (morecantile copies on get)."""
    if tile_size == 256:
        tms: TileMatrixSet = morecantile.tms.get("WebMercatorQuad")
        return tms
    e = MERCATOR_HALF_EXTENT
    tms = TileMatrixSet.custom(
        [-e, -e, e, e],
        pyproj.CRS.from_epsg(3857),
        tile_width=tile_size,
        tile_height=tile_size,
        maxzoom=MAX_ZOOM,
        id=f"WebMercatorQuad{tile_size}",
    )
    return tms


def mercator_resolution(zoom: int, tile_size: int = 256) -> float:
    """Pixel size in Web Mercator metres of ``zoom``."""
    return float(EARTH_CIRCUMFERENCE / (tile_size * 2**zoom))


def ground_resolution(mercator_res: float, lat: float) -> float:
    """Ground m/px at ``lat`` of a Web Mercator pixel size (the Mercator scale factor)."""
    return mercator_res * math.cos(math.radians(lat))


def mercator_res_for_ground(ground_res: float, lat: float) -> float:
    """Web Mercator pixel size that gives ``ground_res`` m/px on the ground at ``lat``."""
    return ground_res / math.cos(math.radians(lat))


def matrix_resolution(tms: TileMatrixSet, zoom: int) -> float:
    """Cell size of matrix ``zoom`` in the TMS CRS units."""
    return float(tms.matrix(zoom).cellSize)


def zoom_for_resolution(tms: TileMatrixSet, res: float, min_zoom: int, max_zoom: int) -> int:
    """Coarsest zoom whose native cell size is at least as fine as ``res``.

    Past the finest zoom the finest is returned (the read is upsampled).
    """
    for zoom in range(min_zoom, max_zoom + 1):
        if matrix_resolution(tms, zoom) <= res * (1 + RES_TOLERANCE):
            return zoom
    return max_zoom


def tile_range(tms: TileMatrixSet, bbox: BBox, zoom: int) -> tuple[range, range]:
    """Columns and rows of matrix ``zoom`` that intersect ``bbox`` (in the TMS CRS)."""
    matrix = tms.matrix(zoom)
    span_x = matrix.cellSize * matrix.tileWidth
    span_y = matrix.cellSize * matrix.tileHeight
    origin_x, origin_y = _origin_xy(tms, zoom)
    col0 = math.floor((bbox.left - origin_x) / span_x + RES_TOLERANCE)
    col1 = math.ceil((bbox.right - origin_x) / span_x - RES_TOLERANCE)
    if matrix.cornerOfOrigin == "bottomLeft":
        row0 = math.floor((bbox.bottom - origin_y) / span_y + RES_TOLERANCE)
        row1 = math.ceil((bbox.top - origin_y) / span_y - RES_TOLERANCE)
    else:
        row0 = math.floor((origin_y - bbox.top) / span_y + RES_TOLERANCE)
        row1 = math.ceil((origin_y - bbox.bottom) / span_y - RES_TOLERANCE)
    cols = range(max(col0, 0), min(col1, matrix.matrixWidth))
    rows = range(max(row0, 0), min(row1, matrix.matrixHeight))
    return cols, rows


def tiles_for_bbox(tms: TileMatrixSet, bbox: BBox, zoom: int) -> Iterator[TileIndex]:
    """Every tile of matrix ``zoom`` intersecting ``bbox`` (in the TMS CRS), row by row."""
    cols, rows = tile_range(tms, bbox, zoom)
    for row in rows:
        for col in cols:
            yield TileIndex(col, row, zoom)


def tile_transform(tms: TileMatrixSet, tile: TileIndex) -> Affine:
    """Affine transform of a tile's pixels in the TMS CRS (top-left origin, north up)."""
    matrix = tms.matrix(tile.z)
    res = matrix.cellSize
    origin_x, origin_y = _origin_xy(tms, tile.z)
    left = origin_x + tile.x * matrix.tileWidth * res
    if matrix.cornerOfOrigin == "bottomLeft":
        top = origin_y + (tile.y + 1) * matrix.tileHeight * res
    else:
        top = origin_y - tile.y * matrix.tileHeight * res
    return from_origin(left, top, res, res)


def _origin_xy(tms: TileMatrixSet, zoom: int) -> tuple[float, float]:
    """Matrix origin as (x, y), whatever the CRS axis order of ``pointOfOrigin``."""
    a, b = tms.matrix(zoom).pointOfOrigin
    return (b, a) if tms._invert_axis else (a, b)


def point_grid(x: float, y: float, res: float, width: int, height: int) -> tuple[BBox, Affine]:
    """A ``width`` x ``height`` grid of ``res`` cells centred on (x, y)."""
    left = x - res * width / 2
    top = y + res * height / 2
    bbox = BBox(left, top - res * height, left + res * width, top)
    return bbox, from_origin(left, top, res, res)
