"""Metatiles, as MapProxy makes them: one bbox request for a block of N x N tiles.

A WMS or ArcGIS export renders any bbox, and each request costs a round trip and a
render on the server: a block of ``meta_tiles`` x ``meta_tiles`` tiles (plus a buffer of
``meta_buffer`` px on each side, so labels and symbols cut at tile edges match) is asked
for at once, cut into tiles, and every tile is stored. Requests for any tile of a
metatile being fetched wait for that one fetch: in a process by :class:`SingleFlight` on
the metatile key, across the worker processes of ``serve --workers N`` by the cache's
:class:`FileLocks` on that key (a process that finds the lock taken polls the disk tier
until every tile of the block is stored, as :class:`TileCache` does for single tiles).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

import attrs
import numpy as np
from rasterio.transform import from_origin

from proxy.cache.flight import FileLocks, SingleFlight
from proxy.cache.tiles import CacheKey, FetchOutcome, Fresh, NoData, TileCache, Validators
from proxy.tiles import codec
from proxy.tiles.request import TileAsk
from streaming.decode import RGBA
from streaming.grid import MERCATOR_HALF_EXTENT, WEB_MERCATOR_CRS, mercator_resolution
from streaming.mosaic import Grid
from streaming.reader import ReadLimits, SourceReader
from streaming.sources import BBoxSource


@attrs.frozen
class Metatile:
    """A block of tiles of one zoom, and the buffer around it, in pixels."""

    z: int
    col0: int  # first tile column
    row0: int  # first tile row
    cols: int
    rows: int
    tile_px: int
    pad: tuple[int, int, int, int]  # buffer px: left, top, right, bottom

    @property
    def grid(self) -> Grid:
        """The Web Mercator grid of the whole block, buffer included."""
        res = mercator_resolution(self.z, self.tile_px)
        left = -MERCATOR_HALF_EXTENT + (self.col0 * self.tile_px - self.pad[0]) * res
        top = MERCATOR_HALF_EXTENT - (self.row0 * self.tile_px - self.pad[1]) * res
        width = self.cols * self.tile_px + self.pad[0] + self.pad[2]
        height = self.rows * self.tile_px + self.pad[1] + self.pad[3]
        return Grid(WEB_MERCATOR_CRS, from_origin(left, top, res, res), width, height)

    def tiles(self) -> list[tuple[int, int]]:
        """(x, y) of every tile of the block, row by row."""
        return [(self.col0 + i, self.row0 + j) for j in range(self.rows) for i in range(self.cols)]

    def offset(self, x: int, y: int) -> tuple[int, int]:
        """(col, row) pixel offset of tile (x, y) in the block's image."""
        return (
            (x - self.col0) * self.tile_px + self.pad[0],
            (y - self.row0) * self.tile_px + self.pad[1],
        )


def metatile_for(ask: TileAsk, size: int, buffer: int) -> Metatile:
    """The metatile holding ``ask``: ``size`` tiles a side, clipped to the matrix.

    The buffer stops at the world's edges: past them is nothing to render.
    """
    side = 1 << ask.z
    col0, row0 = ask.x // size * size, ask.y // size * size
    cols, rows = min(size, side - col0), min(size, side - row0)
    pad = (
        buffer if col0 > 0 else 0,
        buffer if row0 > 0 else 0,
        buffer if col0 + cols < side else 0,
        buffer if row0 + rows < side else 0,
    )
    return Metatile(ask.z, col0, row0, cols, rows, ask.tile_px, pad)


def cut_tiles(rgba: RGBA, meta: Metatile) -> dict[tuple[int, int], bytes | None]:
    """Every tile of the block as a PNG; ``None`` where the image is all transparent."""
    out: dict[tuple[int, int], bytes | None] = {}
    for x, y in meta.tiles():
        col, row = meta.offset(x, y)
        piece = rgba[:, row : row + meta.tile_px, col : col + meta.tile_px]
        out[(x, y)] = codec.encode(np.ascontiguousarray(piece), "png") if piece[3].any() else None
    return out


class Metatiles:
    """Renders metatiles of bbox sources into the tile cache."""

    def __init__(
        self,
        cache: TileCache,
        executor: Executor | None,
        limits: ReadLimits,
        size: int = 4,
        buffer: int = 16,
    ) -> None:
        self.cache = cache
        self.executor = executor
        self.limits = limits
        self.size = size
        self.buffer = buffer
        self._flight: SingleFlight[
            tuple[str, str, int, int, int], dict[tuple[int, int], bytes | None]
        ]
        self._flight = SingleFlight()
        # Buckets of their own: a tile's lock (held by TileCache around this fetch) and its
        # metatile's never share a file, so a process never waits for its own lock.
        self._locks = FileLocks(Path(cache.disk.root) / ".locks" / "meta")
        self.fetches = 0  # metatiles rendered by this process (for tests and stats)

    async def fetch(
        self,
        source: BBoxSource,
        fingerprint: str,
        namespace: str,
        ttl: float,
        ask: TileAsk,
        validators: Validators | None = None,
    ) -> FetchOutcome:
        """The tile ``ask`` (a PNG), cut from its metatile: the one being made, or a new one."""
        meta = metatile_for(ask, self.size, self.buffer)
        key = (fingerprint, namespace, meta.z, meta.col0, meta.row0)

        async def render() -> dict[tuple[int, int], bytes | None]:
            return await self._render(source, fingerprint, namespace, ttl, meta)

        async def stored() -> dict[tuple[int, int], bytes | None] | None:
            return await self._stored(fingerprint, namespace, ttl, meta)

        async def locked() -> dict[tuple[int, int], bytes | None]:
            return await self._locks.run("/".join(map(str, key)), stored, render)

        tiles = await self._flight.run(key, locked)
        body = tiles.get((ask.x, ask.y))
        return NoData() if body is None else Fresh(body, "image/png")

    async def _stored(
        self, fingerprint: str, namespace: str, ttl: float, meta: Metatile
    ) -> dict[tuple[int, int], bytes | None] | None:
        """Every tile of ``meta``, fresh in the cache (another process cut them), else None."""
        now = self.cache.now()
        tiles: dict[tuple[int, int], bytes | None] = {}
        for x, y in meta.tiles():
            entry = await self.cache.get(CacheKey(fingerprint, namespace, meta.z, x, y))
            if entry is None:
                return None
            if now - entry.stored_at >= (self.cache.negative_ttl if entry.negative else ttl):
                return None
            tiles[(x, y)] = None if entry.negative else entry.body
        return tiles

    async def _render(
        self, source: BBoxSource, fingerprint: str, namespace: str, ttl: float, meta: Metatile
    ) -> dict[tuple[int, int], bytes | None]:
        self.fetches += 1
        # The tiles cut below are what is cached: not the metatile image as well.
        source = getattr(source, "inner", source)
        read = await SourceReader(source, self.executor, self.limits).read(meta.grid)
        loop = asyncio.get_running_loop()
        tiles = await loop.run_in_executor(self.executor, cut_tiles, read.rgba, meta)
        for (x, y), body in tiles.items():
            key = CacheKey(fingerprint, namespace, meta.z, x, y)
            entry = (
                self.cache.missing() if body is None else self.cache.entry(body, "image/png", ttl)
            )
            await self.cache.put(key, entry)
        return tiles
