"""The AOI mask of a read: pixels whose centre is outside every AOI are zeroed.

A pixel is in when its centre is inside an AOI (GDAL's rasterize rule). Blocking work
(rasterization, numpy): run it in the executor.
"""

from __future__ import annotations

import numpy as np
import shapely
from rasterio.features import geometry_mask
from rasterio.transform import Affine

from streaming.aoi import AOIs
from streaming.layout import grid_bounds, project
from streaming.mosaic import Grid

MASK_BLOCK = 256  # px: the mask is drawn only in the blocks an AOI edge crosses


def aoi_mask(aois: AOIs, output: Grid) -> np.ndarray:
    """True where a pixel's centre is inside an AOI (the AOIs projected into the grid CRS)."""
    return _inside(project(aois, output.crs), output)


def mask_outside(rgba: np.ndarray, aois: AOIs, output: Grid) -> np.ndarray:
    """``rgba`` with the pixels whose centre is outside every AOI zeroed, in place if it can.

    The mask is drawn (:func:`aoi_mask`) only in the blocks of :data:`MASK_BLOCK` px that
    an AOI edge crosses: a block inside the AOIs keeps its pixels (each centre is an
    interior point), a block clear of them is zeroed. A window inside an AOI draws nothing.
    """
    if not rgba.flags.writeable:  # a resampled read is a read-only view of Pillow's bytes
        rgba = rgba.copy()
    t = output.transform
    if t.b or t.d:  # rotated: no blocks of the CRS's axes
        rgba[:, ~aoi_mask(aois, output)] = 0
        return rgba
    area = project(aois, output.crs)
    tops = np.arange(0, output.height, MASK_BLOCK)
    lefts = np.arange(0, output.width, MASK_BLOCK)
    boxes = _block_boxes(t, tops, lefts, output)
    inside = shapely.covers(area, boxes)
    touches = shapely.intersects(area, boxes)
    pixels = _whole_pixels(rgba)
    for i in np.flatnonzero(~inside):  # the blocks an AOI edge crosses, or clear of them
        r, c = int(tops[i // len(lefts)]), int(lefts[i % len(lefts)])
        h, w = min(MASK_BLOCK, output.height - r), min(MASK_BLOCK, output.width - c)
        part = pixels[..., r : r + h, c : c + w]
        block = _block(output, r, c, h, w) if touches[i] else None
        edge = None if block is None else polygons(shapely.clip_by_rect(area, *grid_bounds(block)))
        if block is None or edge is None:
            part[...] = 0
        else:  # the AOIs cut to the block: a few vertices to rasterize, not all of them
            np.multiply(part, _inside(edge, block), out=part)
    return rgba


def _block_boxes(t: Affine, tops: np.ndarray, lefts: np.ndarray, output: Grid) -> np.ndarray:
    """The blocks' boxes in the grid CRS, row by row, from the transform (no rotation).

    Computed at once (no grid per block): float noise of ~1e-9 units here cannot change a
    decision, as a pixel centre is half a pixel inside its block.
    """
    x = t.c + t.a * np.append(lefts, output.width)
    y = t.f + t.e * np.append(tops, output.height)
    x0, x1 = np.minimum(x[:-1], x[1:]), np.maximum(x[:-1], x[1:])
    y0, y1 = np.minimum(y[:-1], y[1:]), np.maximum(y[:-1], y[1:])
    rows, cols = len(tops), len(lefts)
    boxes: np.ndarray = shapely.box(
        np.tile(x0, rows), np.repeat(y0, cols), np.tile(x1, rows), np.repeat(y1, cols)
    )
    return boxes


def _whole_pixels(rgba: np.ndarray) -> np.ndarray:
    """``rgba`` as (h, w) uint32 pixels when it views interleaved RGBA, else as is.

    Zeroing a pixel is then one 4-byte write, not four single bytes 4 apart.
    """
    if rgba.shape[0] == 4 and rgba.strides[0] == 1 and rgba.strides[2] == 4:
        pixels: np.ndarray = rgba.transpose(1, 2, 0).view(np.uint32)[..., 0]
        return pixels
    return rgba


def polygons(geometry: object) -> object | None:
    """The polygons of ``geometry`` (a clip may add lines or points), None if none."""
    flat = shapely.get_parts(shapely.get_parts(geometry))  # collections, then multi-parts
    parts = [p for p in flat if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.multipolygons(parts) if parts else None


def _inside(geometry: object, output: Grid) -> np.ndarray:
    inside: np.ndarray = geometry_mask(
        [geometry], out_shape=(output.height, output.width), transform=output.transform, invert=True
    )
    return inside


def _block(output: Grid, row: int, col: int, height: int, width: int) -> Grid:
    return Grid(output.crs, output.transform * Affine.translation(col, row), width, height)
