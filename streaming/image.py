"""Streaming images: a virtual raster over AOIs, read window by window from a source.

An image is a grid (:func:`plan_grid`) over the AOIs; nothing is stored. Each read
turns into an output :class:`~streaming.mosaic.Grid` (a window, a bbox, a map tile, a
preview), is priced without fetching (:meth:`StreamingImage.estimate`), then read
through :class:`~streaming.reader.SourceReader` and masked by the AOIs: a pixel is in
when its centre is inside an AOI (GDAL's rasterize rule), band 4 is data AND inside.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

import attrs
import numpy as np
import shapely
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine, from_bounds, from_origin
from rasterio.warp import transform_bounds

from streaming import grid as tilegrid
from streaming.aoi import AOIs
from streaming.errors import InvalidWindow, WindowOutside
from streaming.layout import (
    Cell,
    ImageGrid,
    cells,
    grid_bounds,
    ground_resolution,
    plan_grid,
    project,
    resolve_crs,
)
from streaming.mask import MaskPlan, aoi_mask, apply_mask, plan_mask
from streaming.mask import mask_outside as _masked
from streaming.mosaic import Allocate, Composite, Grid, Mosaic, Piece
from streaming.plan import plan_bbox, plan_tiles, tile_zoom
from streaming.reader import ReadLimits, ReadResult, SourceReader
from streaming.sources import Source, TileSource
from streaming.types import BBox, TileIndex

__all__ = [
    "Cell",
    "ImageGrid",
    "ImageRead",
    "ReadEstimate",
    "StreamingImage",
    "aoi_mask",
    "cells",
    "ground_resolution",
    "plan_grid",
    "resolve_crs",
]

# Rough size of an encoded upstream image per pixel (aerial JPEG ~0.4, PNG ~1.5).
ENCODED_BYTES_PER_PIXEL = 1.0
SNAP_TOLERANCE = 1e-9  # in pixels
MASK_DELAY = 0.001  # s: the AOI mask of a read is drawn after its first requests go out
T = TypeVar("T")


@attrs.frozen
class ReadEstimate:
    """What a read would cost upstream, worked out without fetching anything."""

    zoom: int | None  # the matrix read, for tile sources
    requests: int
    bytes: int  # encoded bytes, roughly (ENCODED_BYTES_PER_PIXEL)
    ground_resolution: float  # m/px of the read at its centre


@attrs.frozen
class ImageRead:
    """Pixels of one read: RGBA (4, h, w) uint8, band 4 = data AND inside an AOI."""

    rgba: np.ndarray
    grid: Grid
    zoom: int | None
    requests: int
    resolution: float  # output CRS units per pixel (the finer axis)
    ground_resolution: float  # m/px at the centre


class StreamingImage:
    """An image over ``aois`` on ``grid``, read on demand from ``source``."""

    def __init__(
        self,
        source: Source,
        grid: ImageGrid,
        aois: AOIs,
        executor: Executor | None,
        limits: ReadLimits,
    ) -> None:
        self.source = source
        self.grid = grid
        self.aois = aois
        self.executor = executor
        self.limits = limits
        self.reader = SourceReader(source, executor, limits)

    def window(
        self,
        col_off: int,
        row_off: int,
        width: int,
        height: int,
        out_width: int | None = None,
        out_height: int | None = None,
    ) -> Grid:
        """The output grid of a pixel window, resampled to ``out_width`` x ``out_height``.

        The window must lie entirely inside the image: a detector stepping over the
        image should see its last window refused, not silently cut.
        """
        if width <= 0 or height <= 0:
            raise InvalidWindow(
                f"the window is {width}x{height} px: width and height must be positive"
            )
        size_w, size_h = self.grid.width, self.grid.height
        name = f"window {col_off},{row_off},{width},{height}"
        image = f"the image is {size_w}x{size_h} px (columns 0..{size_w - 1}, rows 0..{size_h - 1})"
        if col_off >= size_w or row_off >= size_h or col_off + width <= 0 or row_off + height <= 0:
            raise WindowOutside(f"{name} lies outside the image: {image}")
        if col_off < 0 or row_off < 0 or col_off + width > size_w or row_off + height > size_h:
            raise WindowOutside(
                f"{name} is partly outside the image: {image}",
                hint=f"keep col_off >= 0, row_off >= 0, col_off + width <= {size_w} "
                f"and row_off + height <= {size_h}",
            )
        out_w, out_h = self._out_size(width, height, out_width, out_height)
        transform = (
            self.grid.transform
            * Affine.translation(col_off, row_off)
            * Affine.scale(width / out_w, height / out_h)
        )
        return Grid(self.grid.crs, transform, out_w, out_h)

    def bbox(
        self,
        bbox: BBox,
        crs: CRS,
        width: int | None = None,
        height: int | None = None,
        resolution: float | None = None,
    ) -> Grid:
        """The output grid (in the image's CRS) of ``bbox`` given in ``crs``.

        With ``width``/``height`` (one keeps the aspect) the bbox is sampled at that size;
        with ``resolution`` (image CRS units per pixel) at that pixel size; with neither
        it is snapped outward to the image's own pixels. Pixels outside the image are
        masked; a bbox entirely outside it is refused.
        """
        left, bottom, right, top = bbox
        if not all(map(math.isfinite, bbox)) or left >= right or bottom >= top:
            raise InvalidWindow(f"bbox {list(bbox)} is empty: it needs minx < maxx, miny < maxy")
        if resolution is not None and (width is not None or height is not None):
            raise InvalidWindow("give width/height or resolution, not both")
        box = BBox(*transform_bounds(crs, self.grid.crs, *bbox, densify_pts=21))
        if not shapely.box(*box).intersects(shapely.box(*self.grid.bounds())):
            raise WindowOutside(
                f"bbox {list(bbox)} lies outside the image, whose bounds are "
                f"{[round(v, 3) for v in self.grid.bounds()]} in {self.grid.crs}"
            )
        if width is None and height is None and resolution is None:
            return self._snapped(box)
        if resolution is not None:
            if not (math.isfinite(resolution) and resolution > 0):
                raise InvalidWindow(f"the resolution must be positive, not {resolution}")
            out_w = math.ceil(box.width / resolution - SNAP_TOLERANCE)
            out_h = math.ceil(box.height / resolution - SNAP_TOLERANCE)
            self._check_out(out_w, out_h)
            transform = from_origin(box.left, box.top, resolution, resolution)
            return Grid(self.grid.crs, transform, out_w, out_h)
        if width is None:  # keep the bbox's aspect
            assert height is not None
            width = max(1, round(height * box.width / box.height))
        elif height is None:
            height = max(1, round(width * box.height / box.width))
        self._check_out(width, height)
        return Grid(self.grid.crs, from_bounds(*box, width, height), width, height)

    def tile(self, tms: TileMatrixSet, z: int, x: int, y: int, size: int = 256) -> Grid:
        """The output grid of map tile z/x/y of ``tms``, ``size`` px wide."""
        zooms = range(len(tms.tileMatrices))
        if z not in zooms:
            raise InvalidWindow(f"zoom {z} is not in the tile matrix set (0..{zooms[-1]})")
        matrix = tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise InvalidWindow(
                f"tile {z}/{x}/{y} is outside matrix {z} "
                f"({matrix.matrixWidth}x{matrix.matrixHeight} tiles)"
            )
        if size <= 0:
            raise InvalidWindow(f"the tile size must be positive, not {size}")
        cell = tilegrid.tile_transform(tms, TileIndex(x, y, z))
        height = max(1, round(size * matrix.tileHeight / matrix.tileWidth))
        self._check_out(size, height)
        scale = Affine.scale(matrix.tileWidth / size, matrix.tileHeight / height)
        return Grid(tms.rasterio_crs, cell * scale, size, height)

    def preview(self, max_size: int = 1024) -> Grid:
        """The whole image, decimated so that its longer side is at most ``max_size``."""
        if max_size <= 0:
            raise InvalidWindow(f"max_size must be positive, not {max_size}")
        size_w, size_h = self.grid.width, self.grid.height
        scale = max(size_w / max_size, size_h / max_size, 1.0)
        out_w, out_h = max(1, round(size_w / scale)), max(1, round(size_h / scale))
        return self.window(0, 0, size_w, size_h, out_w, out_h)

    def estimate(self, output: Grid) -> ReadEstimate:
        """The zoom, upstream requests and bytes of a read of ``output``, fetching nothing.

        The plan is :class:`SourceReader`'s own (:func:`~streaming.plan.plan_tiles`,
        :func:`~streaming.plan.plan_bbox`); a read that misses every AOI costs 0.
        """
        ground = ground_resolution(output)
        source = self.source
        if isinstance(source, TileSource):
            if not self._touches_aoi(output):
                return ReadEstimate(tile_zoom(source, output), 0, 0, ground)
            tiles = plan_tiles(source, output)
            matrix = source.tms.matrix(tiles.zoom)
            pixels = len(tiles.tiles) * matrix.tileWidth * matrix.tileHeight
            return ReadEstimate(tiles.zoom, len(tiles.tiles), _bytes(pixels), ground)
        if not self._touches_aoi(output):
            return ReadEstimate(None, 0, 0, ground)
        plan = plan_bbox(source, output)
        return ReadEstimate(None, len(plan.parts), _bytes(plan.width * plan.height), ground)

    async def read(self, output: Grid) -> ImageRead:
        """Read ``output`` from the source and mask it by the AOIs (off the event loop)."""
        result, _ = await self.read_then(output, lambda rgba, grid: None)
        return result

    async def read_then(
        self,
        output: Grid,
        finish: Callable[[np.ndarray, Grid], T],
        allocate: Allocate | None = None,
    ) -> tuple[ImageRead, T]:
        """:meth:`read`, and ``finish(rgba, output)`` (blocking, e.g. an encoder) of its pixels.

        Mosaic, mask and ``finish`` run in one executor job: no second and third wait in
        the executor's queue, which the tile cache's disk writes share during a cold read.
        ``allocate`` makes the pixels a read at the image's own resolution pastes into (an
        encoder's buffer: see :class:`~streaming.mosaic.Mosaic`).
        """
        resolution = min(abs(output.transform.a), abs(output.transform.e))
        ground = ground_resolution(output)
        loop = asyncio.get_running_loop()
        if not self._touches_aoi(output):  # nothing would show: fetch nothing
            rgba = np.zeros((4, output.height, output.width), dtype=np.uint8)
            done = await loop.run_in_executor(self.executor, finish, rgba, output)
            return ImageRead(rgba, output, self.estimate(output).zoom, 0, resolution, ground), done
        reader = _FinishingReader(self, finish)
        result = await reader.read(output, allocate=allocate)
        if reader.finished:
            rgba, done = result.rgba, reader.finished[0]
        else:  # nothing was composed (no tile of the matrix there): mask and finish here
            rgba, done = await loop.run_in_executor(
                self.executor, _mask_then, result.rgba, self.aois, output, finish
            )
        return ImageRead(rgba, output, result.zoom, result.requests, resolution, ground), done

    def _touches_aoi(self, output: Grid) -> bool:
        return bool(shapely.box(*grid_bounds(output)).intersects(project(self.aois, output.crs)))

    def _snapped(self, box: BBox) -> Grid:
        """The image pixels covering ``box`` (in the image CRS), snapped outward."""
        res, origin = self.grid.resolution, self.grid.transform
        col0 = math.floor((box.left - origin.c) / res + SNAP_TOLERANCE)
        col1 = math.ceil((box.right - origin.c) / res - SNAP_TOLERANCE)
        row0 = math.floor((origin.f - box.top) / res + SNAP_TOLERANCE)
        row1 = math.ceil((origin.f - box.bottom) / res - SNAP_TOLERANCE)
        width, height = max(col1 - col0, 1), max(row1 - row0, 1)
        self._check_out(width, height)
        transform = origin * Affine.translation(col0, row0)
        return Grid(self.grid.crs, transform, width, height)

    def _out_size(
        self, width: int, height: int, out_width: int | None, out_height: int | None
    ) -> tuple[int, int]:
        if out_width is None and out_height is None:
            out_width, out_height = width, height
        elif out_height is None:
            assert out_width is not None
            out_height = max(1, round(height * out_width / width))
        elif out_width is None:
            out_width = max(1, round(width * out_height / height))
        self._check_out(out_width, out_height)
        return out_width, out_height

    def _check_out(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise InvalidWindow(f"the output is {width}x{height} px: sizes must be positive")
        if width * height > self.limits.max_pixels:
            raise InvalidWindow(
                f"the output is {width}x{height} px, past the limit of {self.limits.max_pixels} px",
                hint="ask for a smaller output (out_width/out_height) or a smaller area",
            )


class _FinishingReader(SourceReader, Generic[T]):
    """A reader of one read whose mosaic job also masks the pixels and calls ``finish``."""

    def __init__(self, image: StreamingImage, finish: Callable[[np.ndarray, Grid], T]) -> None:
        super().__init__(image.source, image.executor, image.limits)
        self.aois, self.finish = image.aois, finish
        self.mask: asyncio.Future[MaskPlan] | None = None
        self.finished: list[T] = []

    async def read(
        self,
        output: Grid,
        *,
        zoom: int | None = None,
        resampling: Resampling = Resampling.bilinear,
        allocate: Allocate | None = None,
    ) -> ReadResult:
        """:meth:`SourceReader.read`, the AOI mask drawn meanwhile (applied in the mosaic job)."""
        self.mask = mask = asyncio.ensure_future(self._draw_mask(output))
        try:
            return await super().read(output, zoom=zoom, resampling=resampling, allocate=allocate)
        finally:
            await asyncio.wait({mask})  # never left running
            if not mask.cancelled():
                mask.exception()  # seen: _compose raised it, or the read failed before

    async def _draw_mask(self, output: Grid) -> MaskPlan:
        # After the loop's first iterations, where the read's first requests go out. Waiting
        # for all 81 of a cold read (15 ms) measured the same (RESULTS.md, reads round 5).
        await asyncio.sleep(MASK_DELAY)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, plan_mask, self.aois, output)

    async def _compose(
        self, pieces: list[Piece], mosaic: Mosaic, resampling: Resampling
    ) -> Composite:
        assert self.mask is not None
        mask = await self.mask

        def work() -> Composite:
            made = mosaic.finish(pieces, resampling)
            rgba = apply_mask(made.rgba, mask)
            self.finished.append(self.finish(rgba, mosaic.output))
            return attrs.evolve(made, rgba=rgba)

        return await asyncio.get_running_loop().run_in_executor(self.executor, work)


def _mask_then(
    rgba: np.ndarray, aois: AOIs, output: Grid, finish: Callable[[np.ndarray, Grid], T]
) -> tuple[np.ndarray, T]:
    masked = _masked(rgba, aois, output)
    return masked, finish(masked, output)


def _bytes(pixels: int) -> int:
    return round(pixels * ENCODED_BYTES_PER_PIXEL)
