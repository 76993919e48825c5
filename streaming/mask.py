"""The AOI mask of a read: pixels whose centre is outside every AOI are zeroed.

A pixel is in when its centre is inside an AOI (GDAL's rasterize rule). Blocking work
(rasterization, numpy): run it in the executor.
"""

from __future__ import annotations

import attrs
import numpy as np
import shapely
from rasterio.features import geometry_mask
from rasterio.transform import Affine

from streaming.aoi import AOIs
from streaming.gdal_env import thread_env
from streaming.layout import grid_bounds, project
from streaming.mosaic import Grid

MASK_BLOCK = 256  # px: the mask is drawn only in the blocks an AOI edge crosses


def aoi_mask(aois: AOIs, output: Grid) -> np.ndarray:
    """True where a pixel's centre is inside an AOI (the AOIs projected into the grid CRS)."""
    return ~_outside(project(aois, output.crs), output)


def mask_outside(rgba: np.ndarray, aois: AOIs, output: Grid) -> np.ndarray:
    """``rgba`` with the pixels whose centre is outside every AOI zeroed, in place if it can.

    :func:`plan_mask`, then :func:`apply_mask`; ``rgba`` may view interleaved pixels or be
    band-first.
    """
    return apply_mask(rgba, plan_mask(aois, output))


@attrs.frozen
class MaskPlan:
    """Where a read's pixels are zeroed: drawn before the pixels exist, applied after."""

    whole: np.ndarray | None  # a rotated grid's outside pixels (no blocks)
    clear: list[tuple[int, int, int, int]]  # (row, col, height, width): all outside
    edges: list[tuple[int, int, np.ndarray]]  # (row, col, outside pixels of the rectangle)


def plan_mask(aois: AOIs, output: Grid) -> MaskPlan:
    """The outside pixels of ``output``, drawn only in the blocks an AOI edge crosses.

    Blocks of :data:`MASK_BLOCK` px, a rectangle of them at a time (:func:`block_rectangles`):
    a block inside the AOIs keeps its pixels (each centre is an interior point), a block
    clear of them is zeroed whole. A window inside an AOI draws nothing.
    """
    t = output.transform
    if t.b or t.d:  # rotated: no blocks of the CRS's axes
        return MaskPlan(_outside(project(aois, output.crs), output), [], [])
    area = project(aois, output.crs)
    tops = np.arange(0, output.height, MASK_BLOCK)
    lefts = np.arange(0, output.width, MASK_BLOCK)
    boxes = _block_boxes(t, tops, lefts, output)
    inside = shapely.covers(area, boxes).reshape(len(tops), len(lefts))
    touches = shapely.intersects(area, boxes).reshape(len(tops), len(lefts))
    plan = MaskPlan(None, [], [])
    for crossed, blocks in ((False, ~touches), (True, touches & ~inside)):
        for r0, r1, c0, c1 in block_rectangles(blocks):
            r, c = r0 * MASK_BLOCK, c0 * MASK_BLOCK
            h = min(r1 * MASK_BLOCK, output.height) - r
            w = min(c1 * MASK_BLOCK, output.width) - c
            block = _block(output, r, c, h, w)
            edge = polygons(shapely.clip_by_rect(area, *grid_bounds(block))) if crossed else None
            if edge is None:  # clear of every AOI (or only touching it along a line)
                plan.clear.append((r, c, h, w))
            else:  # the AOIs cut to the blocks: a few vertices to rasterize, not all of them
                plan.edges.append((r, c, _outside(edge, block)))
    return plan


def apply_mask(rgba: np.ndarray, plan: MaskPlan) -> np.ndarray:
    """``rgba`` (4, h, w) with the plan's outside pixels zeroed, in place if it can."""
    if not rgba.flags.writeable:  # a resampled read is a read-only view of Pillow's bytes
        rgba = rgba.copy()
    if plan.whole is not None:
        rgba[:, plan.whole] = 0
        return rgba
    pixels = _whole_pixels(rgba)
    for r, c, h, w in plan.clear:
        pixels[..., r : r + h, c : c + w] = 0
    for r, c, outside in plan.edges:
        h, w = outside.shape
        np.copyto(pixels[..., r : r + h, c : c + w], 0, where=outside)  # 4x a multiply's speed
    return rgba


def block_rectangles(blocks: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles (row0, row1, col0, col1; ends excluded) covering the True blocks exactly.

    Runs of a row are merged with the same run of the rows below: the blocks along a
    straight AOI edge make one rasterization (a call costs ~0.25 ms whatever its size,
    so 15 edge blocks of a 2048 px window cost 7 ms one by one).
    """
    open_runs: dict[tuple[int, int], int] = {}  # (col0, col1) -> first row
    done: list[tuple[int, int, int, int]] = []
    for row in range(blocks.shape[0] + 1):
        runs = set(_runs(blocks[row])) if row < blocks.shape[0] else set()
        for run in [r for r in open_runs if r not in runs]:
            done.append((open_runs.pop(run), row, *run))
        for run in runs:
            open_runs.setdefault(run, row)
    return done


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


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


def _outside(geometry: object, output: Grid) -> np.ndarray:
    thread_env()
    outside: np.ndarray = geometry_mask(
        [geometry], out_shape=(output.height, output.width), transform=output.transform
    )
    return outside


def _block(output: Grid, row: int, col: int, height: int, width: int) -> Grid:
    return Grid(output.crs, output.transform * Affine.translation(col, row), width, height)
