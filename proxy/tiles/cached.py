"""A tile source that reads through the tile cache: every read of a saved server does.

:class:`proxy.cache.sources.OpenSources` wraps each tile source it opens, so tile routes,
test connections, streaming reads and jobs share one cache, keyed by the server's config
fingerprint (namespace ``"tile"``: the upstream's own tiles, in its own matrices).
Revalidation is conditional: the stored validators travel to
:meth:`proxy.upstream.base.ServerConnection.get_image` in :data:`CONDITIONAL`, and a 304
comes back as :class:`UpstreamNotModified`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from morecantile import TileMatrixSet

from proxy.cache.tiles import (
    CacheKey,
    CacheResult,
    FetchOutcome,
    Fresh,
    NoData,
    NotModified,
    TileCache,
    Validators,
)
from proxy.tiles.codec import check_complete, media_type
from proxy.upstream.base import CONDITIONAL, UpstreamNotModified
from streaming.sources import FetchedImage, TileSource
from streaming.types import TileIndex

NAMESPACE = "tile"


class CachedTileSource:
    """A :class:`TileSource` over another, each tile kept in a :class:`TileCache`."""

    def __init__(self, inner: TileSource, cache: TileCache, fingerprint: str, ttl: float) -> None:
        self.inner = inner
        self.cache = cache
        self.fingerprint = fingerprint
        self.ttl = ttl

    def __getattr__(self, name: str) -> Any:
        """What the adapter offers beyond the protocol (``warnings``, ``connection``...)."""
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def tms(self) -> TileMatrixSet:
        """The inner source's tile matrix set."""
        return self.inner.tms

    @property
    def min_zoom(self) -> int:
        """The inner source's coarsest matrix."""
        return self.inner.min_zoom

    @property
    def max_zoom(self) -> int:
        """The inner source's finest matrix."""
        return self.inner.max_zoom

    def key(self, tile: TileIndex) -> CacheKey:
        """The cache key of an upstream tile of this server."""
        return CacheKey(self.fingerprint, NAMESPACE, tile.z, tile.x, tile.y)

    async def cached(self, tile: TileIndex) -> CacheResult:
        """The cached answer for ``tile`` (HIT, MISS, STALE or NEGATIVE), fetched if needed."""
        return await self.cache.get_or_fetch(self.key(tile), partial(self._fetch, tile), self.ttl)

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """One tile, from the cache or the upstream; ``None`` where the upstream has none."""
        if not self.inner.min_zoom <= tile.z <= self.inner.max_zoom:
            return None  # never asked, never stored
        entry = (await self.cached(tile)).entry
        if entry is None:
            return None
        return FetchedImage(
            entry.body, entry.content_type, entry.upstream_etag, entry.upstream_last_modified
        )

    async def _fetch(self, tile: TileIndex, validators: Validators | None) -> FetchOutcome:
        token = CONDITIONAL.set(validators.headers() if validators is not None else None)
        try:
            image = await self.inner.fetch_tile(tile)
        except UpstreamNotModified:
            return NotModified()
        finally:
            CONDITIONAL.reset(token)
        if image is None:
            return NoData()
        check_complete(image.data)  # a cut image is an upstream failure, never stored
        return Fresh(
            image.data,
            media_type(image.data, image.content_type),
            upstream_etag=image.etag,
            upstream_last_modified=image.last_modified,
        )
