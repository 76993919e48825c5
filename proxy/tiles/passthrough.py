"""Upstream tiles that are WebMercatorQuad tiles already: their bytes, as stored, unchanged."""

from __future__ import annotations

from proxy.cache.tiles import CacheResult
from proxy.tiles.cached import CachedTileSource
from proxy.tiles.request import TileAsk
from streaming.types import TileIndex


async def passthrough(source: CachedTileSource, matrix: int, ask: TileAsk) -> CacheResult:
    """The cached upstream tile of ``ask`` (matrix ``matrix`` of the source): no decode."""
    return await source.cached(TileIndex(ask.x, ask.y, matrix))
