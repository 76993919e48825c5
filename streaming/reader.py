"""Read any bbox of a source onto an output grid: plan, fetch (bounded), then mosaic off-loop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import lru_cache, partial

import attrs
import numpy as np
from morecantile import TileMatrixSet
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import transform_bounds

from streaming import grid
from streaming.codecs import DEFAULT_MAX_IMAGE_PIXELS, REDUCE_FACTORS
from streaming.decode import RGBA
from streaming.decoded import TileMemo
from streaming.errors import ReadTooLarge
from streaming.gather import bounded_gather
from streaming.mosaic import Composite, Grid, Piece, compose
from streaming.predecode import Predecoder
from streaming.sources import BBoxSource, FetchedImage, Source, TileSource
from streaming.types import BBox, TileIndex

_TO_MERCATOR = Transformer.from_crs(4326, 3857, always_xy=True)
# A request may hold up to this many times the output's pixels (to be fine on both axes).
MAX_GROWTH = 4.0
RES_SLACK = 1e-6  # float noise must not add a column


@attrs.frozen
class ReadResult:
    """Pixels of a read on its output grid, and what it cost upstream."""

    # (4, h, w) view of interleaved pixels (encode takes it without a copy); read-only when
    # it comes from the resize, so copy it before writing into it.
    rgba: RGBA
    grid: Grid
    zoom: int | None  # the matrix read, for tile sources
    requests: int
    missing: int
    blank: int


@attrs.frozen(kw_only=True)
class ReadLimits:
    """Budgets checked before anything is fetched."""

    max_pixels: int = 4096 * 4096
    max_requests: int = 256
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    concurrency: int = 8


class SourceReader:
    """Reads bboxes of a :class:`TileSource` or :class:`BBoxSource` as RGBA arrays."""

    def __init__(
        self, source: Source, executor: Executor | None = None, limits: ReadLimits | None = None
    ) -> None:
        self.source = source
        self.executor = executor
        self.limits = limits or ReadLimits()

    async def read(
        self,
        output: Grid,
        *,
        zoom: int | None = None,
        resampling: Resampling = Resampling.bilinear,
    ) -> ReadResult:
        """Read the area of ``output`` onto that grid.

        ``zoom`` forces a matrix of a tile source; by default the coarsest matrix at
        least as fine as the output resolution is read.
        """
        pixels = output.width * output.height
        if pixels > self.limits.max_pixels:
            raise ReadTooLarge(
                f"the read is {output.width}x{output.height} px, past the limit of "
                f"{self.limits.max_pixels} px",
                hint="ask for a smaller size or a coarser resolution",
            )
        if isinstance(self.source, TileSource):
            return await self._read_tiles(self.source, output, zoom, resampling)
        return await self._read_bbox(self.source, output, resampling)

    async def _read_tiles(
        self, source: TileSource, output: Grid, zoom: int | None, resampling: Resampling
    ) -> ReadResult:
        tms = source.tms
        tms_crs = tms.rasterio_crs
        plan = plan_tiles(source, output, zoom)
        bbox, zoom, tiles = plan.bbox, plan.zoom, plan.tiles
        res = min(bbox.width / output.width, bbox.height / output.height)
        if not tiles:  # the read lies outside the tile matrix: nothing to fetch
            return _empty(output, zoom)
        self._check_requests(len(tiles))
        matrix = tms.matrix(zoom)
        size = (matrix.tileWidth, matrix.tileHeight)
        first = grid.tile_transform(tms, tiles[0])
        memo: TileMemo | None = getattr(source, "decoded_tiles", None)  # see _compose
        fetched = await self._fetch_tiles(source, tiles, memo, size, res / first.a)
        cols, rows = grid.tile_range(tms, bbox, zoom)
        first = grid.tile_transform(tms, TileIndex(cols.start, rows.start, zoom))
        last = grid.tile_transform(tms, TileIndex(cols.stop - 1, rows.stop - 1, zoom))
        # With a bottom-left origin the first row is the southernmost: take the higher top.
        top = max(first.f, last.f)
        reduce = reduce_factor(res / first.a, size, fetched)
        canvas = Grid(
            tms_crs,
            from_origin(first.c, top, first.a * reduce, -first.e * reduce),
            len(cols) * matrix.tileWidth // reduce,
            len(rows) * matrix.tileHeight // reduce,
        )
        pieces = [
            _tile_piece(tms, tile, image, canvas, reduce)
            for tile, image in zip(tiles, fetched, strict=True)
        ]
        composite = await self._compose(pieces, canvas, output, resampling, memo)
        return _result(composite, output, zoom, len(tiles))

    async def _fetch_tiles(
        self,
        source: TileSource,
        tiles: list[TileIndex],
        memo: TileMemo | None,
        size: tuple[int, int],
        ratio: float,
    ) -> list[FetchedImage | None]:
        """Fetch ``tiles``; with a memo, decode the early ones while the others come."""
        if memo is None:
            return await bounded_gather(
                [source.fetch_tile(t) for t in tiles], self.limits.concurrency
            )
        # The scale all-JPEG tiles decode at (reduce_factor); a PNG tile decodes at 1.
        pre = Predecoder(
            memo, self.executor, size, reduce_factor(ratio, size, []), self.limits.max_image_pixels
        )

        async def fetch(tile: TileIndex) -> FetchedImage | None:
            image = await source.fetch_tile(tile)
            pre.add(image)
            return image

        try:
            fetched = await bounded_gather([fetch(t) for t in tiles], self.limits.concurrency)
        except BaseException:
            pre.cancel()
            raise
        await pre.drain()
        return fetched

    async def _read_bbox(
        self, source: BBoxSource, output: Grid, resampling: Resampling
    ) -> ReadResult:
        plan = plan_bbox(source, output)
        crs, parts = plan.crs, plan.parts
        canvas = Grid(
            crs, from_bounds(*plan.bbox, plan.width, plan.height), plan.width, plan.height
        )
        self._check_requests(len(parts))
        fetched = await bounded_gather(
            [source.fetch_bbox(_part_bbox(canvas, p), crs, p[2], p[3]) for p in parts],
            self.limits.concurrency,
        )
        pieces = [
            Piece(image.data, col, row, w, h, f"part {col},{row} {w}x{h}")
            for (col, row, w, h), image in zip(parts, fetched, strict=True)
        ]
        composite = await self._compose(pieces, canvas, output, resampling)
        return _result(composite, output, None, len(parts))

    def _check_requests(self, count: int) -> None:
        if count > self.limits.max_requests:
            raise ReadTooLarge(
                f"the read needs {count} upstream requests, past the limit of "
                f"{self.limits.max_requests}",
                hint="read a smaller area or at a coarser resolution",
            )

    async def _compose(
        self,
        pieces: list[Piece],
        canvas: Grid,
        output: Grid,
        resampling: Resampling,
        memo: TileMemo | None = None,
    ) -> Composite:
        """Decode, paste and warp in the executor.

        A tile source may offer a ``decoded_tiles`` attribute (a :class:`TileMemo`, e.g. the
        proxy's cached sources): its tiles already decoded are pasted without decoding.
        """
        work: Callable[[], Composite] = partial(
            compose,
            pieces,
            canvas,
            output,
            max_pixels=self.limits.max_image_pixels,
            resampling=resampling,
            memo=memo,
        )
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)


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


def _part_bbox(canvas: Grid, part: tuple[int, int, int, int]) -> BBox:
    col, row, width, height = part
    left, top = canvas.transform @ (col, row)
    right, bottom = canvas.transform @ (col + width, row + height)
    return BBox(left, bottom, right, top)


def _bounds(g: Grid) -> BBox:
    left, top = g.transform @ (0, 0)
    right, bottom = g.transform @ (g.width, g.height)
    return BBox(min(left, right), min(bottom, top), max(left, right), max(bottom, top))


def reduce_factor(
    ratio: float, tile_size: tuple[int, int], fetched: Sequence[FetchedImage | None]
) -> int:
    """The scale (1, 2, 4 or 8) to decode tiles at when the read needs ``ratio`` x coarser.

    Only JPEG tiles decode cheaper at a reduced scale (libjpeg's DCT scaling), and only
    a factor dividing the tile size keeps reduced tiles abutting on the canvas grid.
    """
    if not all(image is None or image.data.startswith(b"\xff\xd8") for image in fetched):
        return 1
    factors = [
        f
        for f in REDUCE_FACTORS
        if f <= ratio * (1 + RES_SLACK) and tile_size[0] % f == 0 and tile_size[1] % f == 0
    ]
    return max(factors, default=1)


def _tile_piece(
    tms: object, tile: TileIndex, image: FetchedImage | None, canvas: Grid, reduce: int
) -> Piece:
    transform = grid.tile_transform(tms, tile)  # type: ignore[arg-type]
    col_off = round((transform.c - canvas.transform.c) / canvas.transform.a)
    row_off = round((transform.f - canvas.transform.f) / canvas.transform.e)
    matrix = tms.matrix(tile.z)  # type: ignore[attr-defined]
    data = image.data if image is not None else None
    w, h = matrix.tileWidth // reduce, matrix.tileHeight // reduce
    return Piece(data, col_off, row_off, w, h, f"tile {tile}", reduce)


def _empty(output: Grid, zoom: int) -> ReadResult:
    rgba = np.zeros((output.height, output.width, 4), dtype=np.uint8).transpose(2, 0, 1)
    return ReadResult(rgba, output, zoom, 0, 0, 0)


def _result(composite: Composite, output: Grid, zoom: int | None, requests: int) -> ReadResult:
    return ReadResult(composite.rgba, output, zoom, requests, composite.missing, composite.blank)


def preview_grid(lat: float, lon: float, resolution: float, size: int) -> Grid:
    """A ``size`` px square Web Mercator grid centred on lat/lon at ``resolution`` ground m/px."""
    x, y = _TO_MERCATOR.transform(lon, lat)
    res = grid.mercator_res_for_ground(resolution, lat)
    _, transform = grid.point_grid(x, y, res, size, size)
    return Grid(grid.WEB_MERCATOR_CRS, transform, size, size)
