"""Where a source's tile matrices meet WebMercatorQuad: pass-through zooms, zoom ranges.

A source matrix whose CRS, origin, cell size and tile size are WebMercatorQuad's at some
zoom serves that zoom's tiles as they are: its bytes pass through. Comparisons allow
1e-4 of a pixel's size, far below the half pixel that would show.
"""

from __future__ import annotations

import math

from morecantile import TileMatrixSet

from streaming.grid import (
    EARTH_CIRCUMFERENCE,
    MAX_ZOOM,
    MERCATOR_HALF_EXTENT,
    is_web_mercator,
    mercator_resolution,
)

TILE_PX = 256
_TOLERANCE = 1e-4  # of a cell
_METRES_PER_DEGREE = EARTH_CIRCUMFERENCE / 360


def mercator_zoom(cell: float, tile_px: int) -> float:
    """The (fractional) WebMercatorQuad zoom whose tiles of ``tile_px`` have ``cell`` m/px."""
    return math.log2(EARTH_CIRCUMFERENCE / (tile_px * cell))


def passthrough_zooms(
    tms: TileMatrixSet, min_zoom: int, max_zoom: int, tile_px: int
) -> dict[int, int]:
    """WebMercatorQuad zoom -> source matrix index, for the matrices equal to that zoom's.

    ``tile_px`` is the size of the tiles asked for (256, or 512 for ``@2x``).
    """
    if not is_web_mercator(tms.rasterio_crs):
        return {}
    found: dict[int, int] = {}
    for index in range(min_zoom, max_zoom + 1):
        matrix = tms.matrix(index)
        if matrix.tileWidth != tile_px or matrix.tileHeight != tile_px:
            continue
        if matrix.cornerOfOrigin not in (None, "topLeft"):
            continue
        cell = float(matrix.cellSize)
        zoom = round(mercator_zoom(cell, tile_px))
        if not 0 <= zoom <= MAX_ZOOM:
            continue
        if abs(cell - mercator_resolution(zoom, tile_px)) > cell * _TOLERANCE:
            continue
        a, b = matrix.pointOfOrigin
        x, y = (b, a) if tms._invert_axis else (a, b)
        slack = cell * _TOLERANCE
        if abs(x + MERCATOR_HALF_EXTENT) <= slack and abs(y - MERCATOR_HALF_EXTENT) <= slack:
            found[zoom] = index
    return found


def cell_metres(tms: TileMatrixSet, index: int) -> float:
    """The cell size of matrix ``index`` in metres (degrees taken at the equator)."""
    cell = float(tms.matrix(index).cellSize)
    return cell * _METRES_PER_DEGREE if tms.rasterio_crs.is_geographic else cell


def rendered_zooms(
    tms: TileMatrixSet, min_zoom: int, max_zoom: int, tile_px: int
) -> tuple[int, int]:
    """The WebMercatorQuad zooms worth rendering from a source's matrices.

    Down to the zoom of its finest matrix, and one zoom coarser than its coarsest (a
    2x downsampling; coarser reads would fetch too many tiles).
    """
    finest = round(mercator_zoom(cell_metres(tms, max_zoom), tile_px))
    coarsest = round(mercator_zoom(cell_metres(tms, min_zoom), tile_px)) - 1
    hi = min(max(finest, 0), MAX_ZOOM)
    return min(max(coarsest, 0), hi), hi


def bbox_zooms(resolution: float | None, tile_px: int) -> tuple[int, int]:
    """Zooms of a source rendering any bbox: all, or down to one past its resolution."""
    if resolution is None:
        return 0, MAX_ZOOM
    deepest = math.ceil(mercator_zoom(resolution, tile_px) - 1e-6) + 1
    return 0, min(max(deepest, 0), MAX_ZOOM)
