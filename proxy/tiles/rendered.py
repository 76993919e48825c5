"""Tiles rendered through the streaming reader: sets other than WebMercatorQuad, other sizes.

The reader mosaics the (cached) upstream tiles covering the WebMercatorQuad tile and
warps them onto it; the result is encoded off the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from rasterio.transform import from_origin

from proxy.cache.tiles import FetchOutcome, Fresh, NoData
from proxy.tiles import codec
from proxy.tiles.request import TileAsk
from streaming.grid import MERCATOR_HALF_EXTENT, WEB_MERCATOR_CRS, mercator_resolution
from streaming.mosaic import Grid
from streaming.reader import ReadLimits, SourceReader
from streaming.sources import TileSource


def tile_grid(ask: TileAsk) -> Grid:
    """The Web Mercator grid of a WebMercatorQuad tile."""
    res = mercator_resolution(ask.z, ask.tile_px)
    span = res * ask.tile_px
    left = -MERCATOR_HALF_EXTENT + ask.x * span
    top = MERCATOR_HALF_EXTENT - ask.y * span
    return Grid(WEB_MERCATOR_CRS, from_origin(left, top, res, res), ask.tile_px, ask.tile_px)


async def render_tile(
    source: TileSource, ask: TileAsk, fmt: str, executor: Executor | None, limits: ReadLimits
) -> FetchOutcome:
    """The tile ``ask`` read from ``source`` and encoded as ``fmt``; no data where none landed."""
    read = await SourceReader(source, executor, limits).read(tile_grid(ask))
    if not read.rgba[3].any():
        return NoData()
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(executor, codec.encode, read.rgba, fmt)
    return Fresh(body, codec.MEDIA[fmt])
