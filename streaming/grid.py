"""Tile-grid math: resolutions, zoom choice and tile ranges, for any morecantile TMS.

Also the one place that knows Web Mercator: its pixel size per zoom, its ground
resolution at a latitude, and the many names servers give it (:func:`is_web_mercator`);
and the one place that decides a CRS's axis order (:func:`northing_first`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import cache, lru_cache

import morecantile
import pyproj
from morecantile import TileMatrixSet
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from streaming.types import BBox, TileIndex

NORTH_SOUTH = frozenset({"north", "south"})
EAST_WEST = frozenset({"east", "west"})

WEB_MERCATOR_CRS = CRS.from_epsg(3857)
WGS84_CRS = CRS.from_epsg(4326)
EARTH_CIRCUMFERENCE = 2 * math.pi * 6378137.0
MERCATOR_HALF_EXTENT = EARTH_CIRCUMFERENCE / 2
# Relative slack when comparing resolutions, so float noise never picks a finer zoom.
RES_TOLERANCE = 1e-6
MAX_ZOOM = 24  # the deepest matrix of morecantile's WebMercatorQuad
# Codes servers give Web Mercator, under EPSG or ESRI: 3785 and 900913 are the pre-2008
# names, 102100/102113 Esri's (ArcGIS still answers wkid 102100 next to latestWkid 3857).
WEB_MERCATOR_CODES = frozenset({3857, 3785, 900913, 102100, 102113})
WEB_MERCATOR_ALIASES = frozenset({"OSGEO:41001"})  # MapServer's old name, unknown to PROJ
# The authority and the trailing code of "EPSG:3857", "urn:ogc:def:crs:EPSG::3857",
# "urn:ogc:def:crs:EPSG:6.18:3:3857" or "http://www.opengis.net/def/crs/EPSG/0/3857".
_AUTHORITY_CODE = re.compile(r"\b(EPSG|ESRI)\b\W(?:.*\D)?(\d+)$", re.I)


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


def ground_resolution(zoom: int, lat: float, tile_size: int = 256) -> float:
    """Ground m/px at ``lat`` of Web Mercator ``zoom`` (its pixel size times cos(lat))."""
    return mercator_resolution(zoom, tile_size) * math.cos(math.radians(lat))


def mercator_res_for_ground(ground_res: float, lat: float) -> float:
    """Web Mercator pixel size that gives ``ground_res`` m/px on the ground at ``lat``."""
    return ground_res / math.cos(math.radians(lat))


def is_web_mercator(crs: CRS | pyproj.CRS | str | int) -> bool:
    """True when ``crs`` is Web Mercator under any of its names.

    Takes a rasterio or pyproj CRS, an EPSG/ESRI code (``3857``, ``"ESRI:102100"``), an
    OGC URN or URI, or any other string PROJ reads (WKT, PROJ JSON).
    """
    if isinstance(crs, int):
        return crs in WEB_MERCATOR_CODES
    if isinstance(crs, str):
        return _names_web_mercator(crs.strip())
    authority = crs.to_authority()
    if authority is not None and authority[0].upper() in ("EPSG", "ESRI"):
        return authority[1].isdigit() and int(authority[1]) in WEB_MERCATOR_CODES
    return crs.to_epsg() in WEB_MERCATOR_CODES  # no authority: PROJ identifies it


@lru_cache(maxsize=256)
def _names_web_mercator(identifier: str) -> bool:
    if identifier.upper() in WEB_MERCATOR_ALIASES:
        return True
    if identifier.isdigit():
        return int(identifier) in WEB_MERCATOR_CODES
    match = _AUTHORITY_CODE.search(identifier)
    if match:
        return int(match.group(2)) in WEB_MERCATOR_CODES
    try:
        return is_web_mercator(pyproj.CRS.from_user_input(identifier))
    except CRSError:
        return False


def northing_first(crs: pyproj.CRS) -> bool:
    """True when the CRS's first axis is northing or latitude, judged by axis *direction*.

    Abbreviations mislead: EPSG:21781 names its easting "Y", EPSG:31466 and EPSG:2180
    name their northing "X". Polar CRSs give both axes a north/south direction (along
    two meridians); only there the abbreviations decide (EPSG:32661 is N,E).
    """
    axes = crs.axis_info
    if len(axes) < 2:
        return False
    first, second = axes[0].direction.lower(), axes[1].direction.lower()
    if first in NORTH_SOUTH and second in EAST_WEST:
        return True
    if first in EAST_WEST and second in NORTH_SOUTH:
        return False
    abbrevs = (axes[0].abbrev.upper(), axes[1].abbrev.upper())
    return abbrevs[0] in ("N", "LAT") or abbrevs == ("Y", "X")


def tile_for_lonlat(tms: TileMatrixSet, zoom: int, lon: float, lat: float) -> TileIndex:
    """The tile of matrix ``zoom`` holding the WGS84 point lon/lat.

    The point is transformed into the TMS CRS first: morecantile's ``tms.tile()`` reads
    lon/lat in the set's own datum (Amersfoort for EPSG:28992, ~100 m away). Points
    outside the matrix are clamped to its edge tiles.
    """
    x, y = _from_wgs84(tms.crs.srs).transform(lon, lat)
    matrix = tms.matrix(zoom)
    origin_x, origin_y = _origin_xy(tms, zoom)
    col = math.floor((x - origin_x) / (matrix.cellSize * matrix.tileWidth))
    if matrix.cornerOfOrigin == "bottomLeft":
        row = math.floor((y - origin_y) / (matrix.cellSize * matrix.tileHeight))
    else:
        row = math.floor((origin_y - y) / (matrix.cellSize * matrix.tileHeight))
    col = min(max(col, 0), matrix.matrixWidth - 1)
    row = min(max(row, 0), matrix.matrixHeight - 1)
    return TileIndex(col, row, zoom)


@lru_cache(maxsize=32)
def _from_wgs84(srs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(4326, pyproj.CRS.from_user_input(srs), always_xy=True)


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
    """Matrix origin as (x, y), read in the TMS's declared axis order.

    That order is the set's ``orderedAxes`` (morecantile's ``_invert_axis``), so tiles
    here agree with morecantile and rio-tiler on the same set; sets built from a CRS
    must declare it by :func:`northing_first` (as the WMTS adapter does).
    """
    a, b = tms.matrix(zoom).pointOfOrigin
    return (b, a) if tms._invert_axis else (a, b)


def point_grid(x: float, y: float, res: float, width: int, height: int) -> tuple[BBox, Affine]:
    """A ``width`` x ``height`` grid of ``res`` cells centred on (x, y)."""
    left = x - res * width / 2
    top = y + res * height / 2
    bbox = BBox(left, top - res * height, left + res * width, top)
    return bbox, from_origin(left, top, res, res)
