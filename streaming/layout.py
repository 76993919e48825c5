"""An image's grid over its AOIs: CRS choice, pixel grid, ground resolution and cells.

The resolution rule (one place, both ways): a resolution in ground metres becomes CRS
units per pixel by dividing by the metres one CRS unit measures on the ground at the
AOI centre (:func:`metres_per_unit`):

- Web Mercator: ``cos(lat)`` (its metres stretch by 1/cos(lat)), so pixels measure the
  asked metres on the ground at the centre;
- geographic CRSs: the length of one degree of *latitude* there (WGS84 ellipsoid), so
  pixels are square in degrees, and finer than asked east-west (by cos(lat));
- other projected CRSs (UTM...): the CRS's linear unit in metres (1 for metres); the
  projection's scale factor (UTM's 0.9996 on the central meridian) is ignored.
"""

from __future__ import annotations

import math
import re
import threading
from functools import lru_cache
from typing import Any

import attrs
import numpy as np
import pyproj
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.transform import Affine

from streaming import grid
from streaming.aoi import AOIs
from streaming.errors import InvalidCRS, InvalidRead
from streaming.mosaic import Grid
from streaming.types import BBox

SNAP_TOLERANCE = 1e-9  # in pixels: a bound on a pixel edge must not add a column
_GEOD = pyproj.Geod(ellps="WGS84")
_EPSG = re.compile(r"(?:EPSG:)?(\d{4,6})", re.I)


@attrs.frozen
class ImageGrid:
    """The pixel grid of an image: CRS, transform (north up), size and resolution.

    ``resolution`` is in CRS units per pixel (square pixels).
    """

    crs: CRS
    transform: Affine
    width: int
    height: int
    resolution: float

    def bounds(self) -> BBox:
        """(left, bottom, right, top) in the CRS."""
        return grid_bounds(self.as_grid())

    def as_grid(self) -> Grid:
        """The grid as the reader's :class:`streaming.mosaic.Grid`."""
        return Grid(self.crs, self.transform, self.width, self.height)


@attrs.frozen
class Cell:
    """A block of an image's pixels a download writes as one file."""

    index: int
    col_off: int
    row_off: int
    width: int
    height: int
    bounds: BBox


def resolve_crs(crs: str | None, aois: AOIs) -> CRS:
    """The CRS an image is laid out in.

    ``None`` is EPSG:3857; ``"EPSG:32632"`` or ``"32632"`` any EPSG code; ``"utm"`` the
    UTM zone (WGS84, 326xx north, 327xx south) of the AOI centre. Norway's and
    Svalbard's zone exceptions are not applied. Unknown codes raise :class:`InvalidCRS`.
    """
    if crs is None or not crs.strip():
        return grid.WEB_MERCATOR_CRS
    text = crs.strip()
    if text.lower() == "utm":
        lon, lat = aois.centre()
        zone = min(int((lon + 180) // 6) + 1, 60)
        return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
    match = _EPSG.fullmatch(text)
    hint = 'give an EPSG code ("EPSG:32632" or "32632") or "utm" for the AOI\'s UTM zone'
    if match is None:
        raise InvalidCRS(f'unknown CRS "{crs}"', hint=hint)
    try:
        resolved = CRS.from_epsg(int(match.group(1)))
    except CRSError as exc:
        raise InvalidCRS(f'unknown CRS "{crs}": no such EPSG code', hint=hint) from exc
    if not (resolved.is_projected or resolved.is_geographic):
        raise InvalidCRS(f'CRS "{crs}" is neither projected nor geographic', hint=hint)
    return resolved


def metres_per_unit(crs: CRS, lon: float, lat: float) -> float:
    """Ground metres one CRS unit measures at lon/lat (see the module's rule)."""
    if grid.is_web_mercator(crs):
        return math.cos(math.radians(lat))
    if crs.is_geographic:
        step = 0.001  # degrees; the meridian arc is smooth, so a short chord is exact enough
        south, north = max(lat - step, -90.0), min(lat + step, 90.0)
        return float(_GEOD.inv(lon, south, lon, north)[2]) / (north - south)
    factor = crs.linear_units_factor[1]
    return float(factor)


def plan_grid(aois: AOIs, resolution_m: float, crs: CRS) -> ImageGrid:
    """The grid of an image over ``aois`` at ``resolution_m`` ground metres per pixel.

    The AOIs' bounds in ``crs`` (edges densified before projecting) are snapped outward
    to the multiples of the grid resolution, so the origin sits on a multiple of it and
    two images at the same resolution share pixel edges.
    """
    if not (math.isfinite(resolution_m) and resolution_m > 0):
        raise InvalidRead(f"the resolution must be a positive number of metres, not {resolution_m}")
    lon, lat = aois.centre()
    res = resolution_m / metres_per_unit(crs, lon, lat)
    minx, miny, maxx, maxy = project(aois, crs).bounds
    col0 = math.floor(minx / res + SNAP_TOLERANCE)
    col1 = math.ceil(maxx / res - SNAP_TOLERANCE)
    row0 = math.floor(miny / res + SNAP_TOLERANCE)  # counted up from y = 0
    row1 = math.ceil(maxy / res - SNAP_TOLERANCE)
    width, height = max(col1 - col0, 1), max(row1 - row0, 1)
    transform = Affine(res, 0.0, col0 * res, 0.0, -res, (row0 + height) * res)
    return ImageGrid(crs, transform, width, height, res)


def project(aois: AOIs, crs: CRS) -> Any:
    """The union of the AOIs in ``crs``, prepared, its edges densified first (they curve there).

    Each thread gets its own geometry: GEOS prepared geometries are not safe to query from
    two threads at once (masks drawn in parallel corrupted the heap and crashed CI).
    """
    mine = getattr(_per_thread, "project", None)
    if mine is None:
        mine = _per_thread.project = lru_cache(maxsize=16)(_project)
    return mine(aois.geometry, crs.to_wkt())


_per_thread = threading.local()


def _project(geometry: Any, wkt: str) -> Any:
    west, south, east, north = geometry.bounds
    step = min(max(max(east - west, north - south) / 1000, 1e-5), 0.01)
    dense = shapely.segmentize(geometry, step)
    to_crs = pyproj.Transformer.from_crs(4326, pyproj.CRS.from_wkt(wkt), always_xy=True)
    projected = shapely.transform(dense, lambda xy: np.column_stack(to_crs.transform(*xy.T)))
    coords = shapely.get_coordinates(projected)
    if not np.isfinite(coords).all():
        raise InvalidCRS(
            "the AOI cannot be projected into that CRS (outside its area of use)",
            hint='choose a CRS that covers the AOI, e.g. "utm"',
        )
    shapely.prepare(projected)
    return projected


def grid_bounds(g: Grid) -> BBox:
    """(left, bottom, right, top) of a grid in its CRS."""
    left, top = g.transform * (0, 0)
    right, bottom = g.transform * (g.width, g.height)
    return BBox(min(left, right), min(bottom, top), max(left, right), max(bottom, top))


def ground_resolution(g: Grid) -> float:
    """Ground metres per pixel at the grid centre, along its finer axis.

    The inverse of :func:`plan_grid`'s rule, so an image planned at R m reads at R m.
    """
    x, y = g.transform * (g.width / 2, g.height / 2)
    lon, lat = _to_lonlat(g.crs.to_wkt()).transform(x, y)
    res = min(math.hypot(g.transform.a, g.transform.d), math.hypot(g.transform.b, g.transform.e))
    return res * metres_per_unit(g.crs, lon, lat)


@lru_cache(maxsize=16)
def _to_lonlat(wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(wkt), 4326, always_xy=True)


def cells(image: ImageGrid, aois: AOIs, max_cell_pixels: int) -> list[Cell]:
    """Blocks of at most ``max_cell_pixels`` a side, from the top-left, that overlap an AOI.

    Blocks that only touch an AOI along an edge are left out (no pixel of theirs is in).
    """
    if max_cell_pixels < 1:
        raise InvalidRead(f"max_cell_pixels must be at least 1, not {max_cell_pixels}")
    step = max_cell_pixels
    blocks = [
        (col, row, min(step, image.width - col), min(step, image.height - row))
        for row in range(0, image.height, step)
        for col in range(0, image.width, step)
    ]
    bounds = [
        grid_bounds(Grid(image.crs, image.transform * Affine.translation(c, r), w, h))
        for c, r, w, h in blocks
    ]
    boxes = shapely.box(*np.array(bounds).T)
    overlap = shapely.area(shapely.intersection(boxes, project(aois, image.crs))) > 0
    kept = [(b, bb) for b, bb, keep in zip(blocks, bounds, overlap, strict=True) if keep]
    return [Cell(i, *block, bb) for i, (block, bb) in enumerate(kept)]
