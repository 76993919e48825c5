"""Read any bbox of a source onto an output grid: plan, fetch (bounded), then mosaic off-loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial

import attrs
import numpy as np
from morecantile import TileMatrixSet
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin

from streaming import grid
from streaming.codecs import DEFAULT_MAX_IMAGE_PIXELS, REDUCE_FACTORS
from streaming.decode import RGBA
from streaming.decoded import TileMemo
from streaming.errors import ReadTooLarge
from streaming.gather import bounded_gather
from streaming.mosaic import Allocate, Composite, Grid, Mosaic, Piece, predecode
from streaming.plan import RES_SLACK, part_bbox, plan_bbox, plan_tiles
from streaming.predecode import JPEG, Predecoder
from streaming.sources import BBoxSource, FetchedImage, Source, TileSource
from streaming.types import BBox, TileIndex

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
        allocate: Allocate | None = None,
    ) -> ReadResult:
        """Read the area of ``output`` onto that grid.

        ``zoom`` forces a matrix of a tile source; by default the coarsest matrix at
        least as fine as the output resolution is read. ``allocate`` makes the pixels a
        read at the source's own resolution is pasted into (see :class:`Mosaic`).
        """
        pixels = output.width * output.height
        if pixels > self.limits.max_pixels:
            raise ReadTooLarge(
                f"the read is {output.width}x{output.height} px, past the limit of "
                f"{self.limits.max_pixels} px",
                hint="ask for a smaller size or a coarser resolution",
            )
        if isinstance(self.source, TileSource):
            return await self._read_tiles(self.source, output, zoom, resampling, allocate)
        return await self._read_bbox(self.source, output, resampling, allocate)

    async def _read_tiles(
        self,
        source: TileSource,
        output: Grid,
        zoom: int | None,
        resampling: Resampling,
        allocate: Allocate | None,
    ) -> ReadResult:
        tms = source.tms
        plan = plan_tiles(source, output, zoom)
        bbox, zoom, tiles = plan.bbox, plan.zoom, plan.tiles
        res = min(bbox.width / output.width, bbox.height / output.height)
        if not tiles:  # the read lies outside the tile matrix: nothing to fetch
            return _empty(output, zoom)
        self._check_requests(len(tiles))
        layout = _TileLayout(tms, bbox, zoom)
        ratio = res / layout.res
        # The scale all-JPEG tiles decode at; at 1 it is 1 whatever comes (reduce_factor).
        ahead = reduce_factor(ratio, layout.size, [])
        memo: TileMemo | None = getattr(source, "decoded_tiles", None)  # see Mosaic
        mosaic = None
        if ahead == 1:  # the canvas is known before any tile: tiles are pasted as they come
            canvas = layout.canvas(1)
            mosaic = self._mosaic(canvas, output, memo, allocate)
        fetched = await self._fetch_tiles(source, tiles, layout, memo, ahead, mosaic)
        reduce = reduce_factor(ratio, layout.size, fetched)
        if mosaic is None:
            canvas = layout.canvas(reduce)
            mosaic = self._mosaic(canvas, output, memo, allocate)
        pieces = [
            layout.piece(t, image, canvas, reduce) for t, image in zip(tiles, fetched, strict=True)
        ]
        composite = await self._compose(pieces, mosaic, resampling)
        return _result(composite, output, zoom, len(tiles))

    def _mosaic(
        self, canvas: Grid, output: Grid, memo: TileMemo | None, allocate: Allocate | None
    ) -> Mosaic:
        limit = self.limits.max_image_pixels
        return Mosaic(canvas, output, max_pixels=limit, memo=memo, allocate=allocate)

    async def _fetch_tiles(
        self,
        source: TileSource,
        tiles: list[TileIndex],
        layout: _TileLayout,
        memo: TileMemo | None,
        reduce: int,
        mosaic: Mosaic | None,
    ) -> list[FetchedImage | None]:
        """Fetch ``tiles``, decoding the early ones while the others come.

        With a ``mosaic`` (its canvas known ahead) each tile is decoded and pasted as it
        arrives; with only a ``memo``, decoded into it (at ``reduce``, the scale of JPEG
        tiles) for the mosaic to paste.
        """
        if mosaic is None and memo is None:
            return await bounded_gather(
                [source.fetch_tile(t) for t in tiles], self.limits.concurrency
            )
        limit = self.limits.max_image_pixels
        pre: Predecoder[tuple[int, Piece]]
        if mosaic is not None:
            pre = Predecoder(self.executor, mosaic.paste_ahead)
        else:
            assert memo is not None
            pre = Predecoder(self.executor, partial(predecode, max_pixels=limit, memo=memo))

        async def fetch(index: int, tile: TileIndex) -> FetchedImage | None:
            image = await source.fetch_tile(tile)
            if image is not None:
                if mosaic is not None:
                    piece = layout.piece(tile, image, mosaic.canvas, 1)
                else:
                    piece = layout.piece_alone(image, reduce)
                pre.add((index, piece))
            return image

        try:
            calls = [fetch(i, t) for i, t in enumerate(tiles)]
            fetched = await bounded_gather(calls, self.limits.concurrency)
        except BaseException:
            pre.cancel()
            raise
        await pre.drain()
        return fetched

    async def _read_bbox(
        self, source: BBoxSource, output: Grid, resampling: Resampling, allocate: Allocate | None
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
        mosaic = self._mosaic(canvas, output, None, allocate)
        composite = await self._compose(pieces, mosaic, resampling)
        return _result(composite, output, None, len(parts))

    def _check_requests(self, count: int) -> None:
        if count > self.limits.max_requests:
            raise ReadTooLarge(
                f"the read needs {count} upstream requests, past the limit of "
                f"{self.limits.max_requests}",
                hint="read a smaller area or at a coarser resolution",
            )

    async def _compose(
        self, pieces: list[Piece], mosaic: Mosaic, resampling: Resampling
    ) -> Composite:
        """Decode and paste the pieces not pasted yet, and warp, in the executor.

        A tile source may offer a ``decoded_tiles`` attribute (a :class:`TileMemo`, e.g. the
        proxy's cached sources): its tiles already decoded are pasted without decoding.
        """
        work: Callable[[], Composite] = partial(mosaic.finish, pieces, resampling)
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)


class _TileLayout:
    """Where the tiles of one matrix land on a read's canvas, worked out once per read."""

    def __init__(self, tms: TileMatrixSet, bbox: BBox, zoom: int) -> None:
        self.tms, self.zoom = tms, zoom
        matrix = tms.matrix(zoom)
        self.size = (matrix.tileWidth, matrix.tileHeight)
        self.cols, self.rows = grid.tile_range(tms, bbox, zoom)
        first = grid.tile_transform(tms, TileIndex(self.cols.start, self.rows.start, zoom))
        last = grid.tile_transform(tms, TileIndex(self.cols.stop - 1, self.rows.stop - 1, zoom))
        self.res = first.a
        # With a bottom-left origin the first row is the southernmost: take the higher top.
        self.top = max(first.f, last.f)
        self.left = first.c
        self.flip = last.f > first.f  # rows counted from the bottom

    def canvas(self, reduce: int) -> Grid:
        """The canvas of the tile range, decoded at 1/``reduce`` scale."""
        width, height = self.size
        return Grid(
            self.tms.rasterio_crs,
            from_origin(self.left, self.top, self.res * reduce, self.res * reduce),
            len(self.cols) * width // reduce,
            len(self.rows) * height // reduce,
        )

    def piece(
        self, tile: TileIndex, image: FetchedImage | None, canvas: Grid, reduce: int
    ) -> Piece:
        """Tile ``tile`` on ``canvas`` (``tile_transform`` arithmetic, without its objects)."""
        width, height = self.size[0] // reduce, self.size[1] // reduce
        col = tile.x - self.cols.start
        row = (self.rows.stop - 1 - tile.y) if self.flip else (tile.y - self.rows.start)
        data = image.data if image is not None else None
        return Piece(data, col * width, row * height, width, height, f"tile {tile}", reduce)

    def piece_alone(self, image: FetchedImage, reduce: int) -> Piece:
        """A fetched tile to decode ahead into a memo (JPEG only at ``reduce``, see above)."""
        if not image.data.startswith(JPEG):
            reduce = 1
        return Piece(
            image.data, 0, 0, self.size[0] // reduce, self.size[1] // reduce, "tile", reduce
        )


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
