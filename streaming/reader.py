"""Read any bbox of a source onto an output grid: plan, fetch (bounded), then mosaic off-loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial

import attrs
import numpy as np
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin

from streaming import grid
from streaming.codecs import DEFAULT_MAX_IMAGE_PIXELS, REDUCE_FACTORS
from streaming.decode import RGBA
from streaming.decoded import TileMemo
from streaming.errors import ReadTooLarge
from streaming.gather import bounded_gather
from streaming.mosaic import Composite, Grid, Piece, compose
from streaming.plan import RES_SLACK, part_bbox, plan_bbox, plan_tiles
from streaming.predecode import Predecoder
from streaming.sources import BBoxSource, FetchedImage, Source, TileSource
from streaming.types import TileIndex

_TO_MERCATOR = Transformer.from_crs(4326, 3857, always_xy=True)


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
            [source.fetch_bbox(part_bbox(canvas, p), crs, p[2], p[3]) for p in parts],
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
