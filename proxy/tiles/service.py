"""The tile service: a saved server's tile, made the way its source allows, through the cache.

Namespaces of the cache, per server fingerprint: ``tile`` holds the upstream's own tiles
(by source matrix), ``rendered:<fmt>[@2x]`` our WebMercatorQuad tiles in a format (rendered,
cut from metatiles, or converted from an upstream tile).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import Executor
from functools import partial

from cachetools import LRUCache, TTLCache

from proxy.cache.sources import OpenSources
from proxy.cache.tiles import (
    CacheEntry,
    CacheKey,
    CacheResult,
    CacheStatus,
    FetchOutcome,
    Fresh,
    NoData,
    TileCache,
    Validators,
)
from proxy.catalog.base import Catalog
from proxy.errors import NotFound, TileNotFound
from proxy.tiles import codec
from proxy.tiles.metatiles import Metatiles
from proxy.tiles.passthrough import passthrough
from proxy.tiles.plan import TilePlan, Way
from proxy.tiles.rendered import render_tile
from proxy.tiles.request import TileAsk
from proxy.upstream.registry import parse_config
from streaming.reader import ReadLimits

# How long a server's plan is reused without reading the catalog (edits and deletes in
# this process forget it at once; other worker processes see them within this delay).
PLAN_TTL = 2.0


def namespace(fmt: str, tile_px: int) -> str:
    """The cache namespace of our tiles in ``fmt`` at ``tile_px``."""
    return f"rendered:{fmt}" + ("@2x" if tile_px == 512 else "")


class TileService:
    """Serves tiles of saved servers."""

    def __init__(
        self,
        catalog: Catalog,
        sources: OpenSources,
        cache: TileCache,
        executor: Executor | None,
        limits: ReadLimits,
        *,
        meta_tiles: int = 4,
        meta_buffer: int = 16,
    ) -> None:
        self.catalog = catalog
        self.sources = sources
        self.cache = cache
        self.executor = executor
        self.limits = limits
        self.metatiles = Metatiles(cache, executor, limits, meta_tiles, meta_buffer)
        self._plans: TTLCache[str, TilePlan] = TTLCache(maxsize=1024, ttl=PLAN_TTL)
        # Answers per server and X-Cache status, in this process (for the hit ratio).
        self.counts: LRUCache[str, Counter[str]] = LRUCache(maxsize=4096)

    async def plan(self, server_id: str) -> TilePlan:
        """The tile plan of a saved server; :class:`NotFound` when there is none."""
        plan = self._plans.get(server_id)
        if plan is not None:
            return plan
        record = await self.catalog.servers.get(server_id)
        if record is None:
            raise NotFound(f"no server with id {server_id!r}")
        config = parse_config(record.config)
        source = await self.sources.get(record)
        fingerprint = self.sources.fingerprint(config)
        plan = TilePlan(server_id, config, fingerprint, source)
        self._plans[server_id] = plan
        return plan

    def forget(self, server_id: str) -> None:
        """Drop a server's plan and opened source (it was edited or deleted)."""
        self._plans.pop(server_id, None)
        self.sources.forget(server_id)

    def count(self, server_id: str, status: str) -> None:
        """Count one answer of a server's tile route."""
        counts = self.counts.get(server_id)
        if counts is None:
            counts = self.counts[server_id] = Counter()
        counts[status] += 1

    async def tile(self, plan: TilePlan, ask: TileAsk) -> CacheResult:
        """The tile ``ask`` of ``plan``'s server (entry None: no data there)."""
        scale = plan.scale(ask.tile_px)
        if not scale.lo <= ask.z <= scale.hi:
            raise TileNotFound(
                f"server {plan.server_id} serves zooms {scale.lo}..{scale.hi}"
                + (" at @2x" if ask.scale == 2 else "")
                + f", not {ask.z}",
                min_zoom=scale.lo,
                max_zoom=scale.hi,
            )
        ttl = plan.config.cache_ttl
        way = plan.way(ask.tile_px, ask.z)
        if way is Way.PASSTHROUGH:
            cached = plan.cached
            assert cached is not None
            base = await passthrough(cached, scale.direct[ask.z], ask)
            return await self._in_format(plan, ask, base, ttl)
        if way is Way.RENDERED:
            fmt = ask.format or "png"
            key = self._key(plan, fmt, ask)
            fetch = partial(self._render, plan, ask, fmt)
            return await self.cache.get_or_fetch(key, fetch, ttl)
        key = self._key(plan, "png", ask)
        meta = partial(
            self.metatiles.fetch, plan.bbox_source, plan.fingerprint, key.namespace, ttl, ask
        )
        base = await self.cache.get_or_fetch(key, meta, ttl)
        return await self._in_format(plan, ask, base, ttl)

    def _key(self, plan: TilePlan, fmt: str, ask: TileAsk) -> CacheKey:
        return CacheKey(plan.fingerprint, namespace(fmt, ask.tile_px), ask.z, ask.x, ask.y)

    async def _render(
        self, plan: TilePlan, ask: TileAsk, fmt: str, validators: Validators | None
    ) -> FetchOutcome:
        return await render_tile(plan.tile_source, ask, fmt, self.executor, self.limits)

    async def _in_format(
        self, plan: TilePlan, ask: TileAsk, base: CacheResult, ttl: float
    ) -> CacheResult:
        """``base`` if it is in the asked format, else its conversion (cached too)."""
        entry = base.entry
        if ask.format is None or entry is None or entry.content_type == codec.MEDIA[ask.format]:
            return base
        fmt = ask.format
        fetch = partial(self._convert, entry, fmt)
        converted = await self.cache.get_or_fetch(self._key(plan, fmt, ask), fetch, ttl)
        if base.status is CacheStatus.STALE and converted.status is not CacheStatus.STALE:
            return CacheResult(converted.entry, CacheStatus.STALE)
        return converted

    async def _convert(
        self, entry: CacheEntry, fmt: str, validators: Validators | None
    ) -> FetchOutcome:
        if entry.negative:
            return NoData()
        loop = asyncio.get_running_loop()
        work = partial(codec.convert, entry.body, fmt, self.limits.max_image_pixels)
        body = await loop.run_in_executor(self.executor, work)
        return Fresh(body, codec.MEDIA[fmt])
