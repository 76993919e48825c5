"""A tile source that reads through the tile cache: every read of a saved server does.

:class:`proxy.cache.sources.OpenSources` wraps each tile source it opens, so tile routes,
test connections, streaming reads and jobs share one cache, keyed by the server's config
fingerprint (namespace ``"tile"``: the upstream's own tiles, in its own matrices).
Revalidation is conditional: the stored validators travel to
:meth:`proxy.upstream.base.ServerConnection.get_image` in :data:`CONDITIONAL`, and a 304
comes back as :class:`UpstreamNotModified`.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

from morecantile import TileMatrixSet
from rasterio.crs import CRS

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
from streaming.decoded import ScopedTiles
from streaming.errors import SourceNotFound
from streaming.sources import BBoxSource, FetchedImage, TileSource
from streaming.types import BBox, TileIndex

NAMESPACE = "tile"
BBOX_NAMESPACE = "bbox"


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

    @property
    def decoded_tiles(self) -> ScopedTiles:
        """This server's decoded tiles, which the reader pastes without decoding again."""
        return self.cache.decoded.scoped(self.fingerprint)

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


class CachedBBoxSource:
    """A :class:`BBoxSource` over another, each answer kept in the :class:`TileCache`.

    Keyed by the exact request (CRS, bbox, size): a window read twice asks the same parts
    (the reader splits on whole pixels, deterministically), so the second read costs the
    upstream nothing. Metatiles use the inner source: their tiles are cached instead.
    """

    def __init__(self, inner: BBoxSource, cache: TileCache, fingerprint: str, ttl: float) -> None:
        self.inner = inner
        self.cache = cache
        self.fingerprint = fingerprint
        self.ttl = ttl

    def __getattr__(self, name: str) -> Any:
        """What the adapter offers beyond the protocol (``warnings``, ``connection``...)."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def crs_list(self) -> list[CRS]:
        """The inner source's CRSs."""
        return self.inner.crs_list

    @property
    def max_size(self) -> tuple[int, int]:
        """The inner source's largest request."""
        return self.inner.max_size

    def key(self, bbox: BBox, crs: CRS, width: int, height: int) -> CacheKey:
        """The cache key of one exact request: a digest spread over the key's x and y."""
        request = f"{crs.to_string()}|{tuple(bbox)!r}|{width}x{height}"
        digest = hashlib.sha256(request.encode()).hexdigest()
        return CacheKey(
            self.fingerprint, BBOX_NAMESPACE, 0, int(digest[:12], 16), int(digest[12:24], 16)
        )

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        """The image of ``bbox``, from the cache or the upstream."""
        fetch = partial(self._fetch, bbox, crs, width, height)
        entry = (
            await self.cache.get_or_fetch(self.key(bbox, crs, width, height), fetch, self.ttl)
        ).entry
        if entry is None:
            raise SourceNotFound("the upstream has no image for this area")
        return FetchedImage(entry.body, entry.content_type)

    async def _fetch(
        self, bbox: BBox, crs: CRS, width: int, height: int, validators: Validators | None
    ) -> FetchOutcome:
        image = await self.inner.fetch_bbox(bbox, crs, width, height)
        check_complete(image.data)  # a cut image is an upstream failure, never stored
        return Fresh(image.data, media_type(image.data, image.content_type))
