"""Opened sources of saved servers, so a request does not re-open (and re-read) its source.

Opening a WMS, WMTS or ArcGIS source reads its capabilities and checks the config against
them; an opened source is reused for as long as its server is unchanged. One entry per
server id, valid for the record's ``updated_at`` and config: an edit makes the next
request re-open, a delete drops the entry. Configs tested before they are saved are not
kept: they are one-off trials, and their documents are cached by fingerprint anyway.
Concurrent first requests of one server (a map's first screen of tiles) open it once:
the opening is a single flight per server version.

With a tile cache, each tile source is wrapped in a
:class:`~proxy.tiles.cached.CachedTileSource` keyed by the config's fingerprint, so every
read of a saved server (tile routes, test connection, streaming reads, jobs) goes through
that cache, and an edit that changes pixels (URL, layer...) reads under a new key.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from cachetools import LRUCache

from proxy.cache.flight import SingleFlight
from proxy.cache.tiles import TileCache
from proxy.catalog.base import ServerRecord
from proxy.quota.enforce import owned_by
from proxy.schemas import ServerBase
from proxy.tiles.cached import CachedBBoxSource, CachedTileSource
from proxy.upstream.base import UpstreamContext
from proxy.upstream.registry import open_source, parse_config
from streaming.sources import Source, TileSource


@attrs.frozen
class _Opened:
    updated_at: str
    config: dict[str, Any]
    source: Source


class OpenSources:
    """A bounded LRU of opened sources per saved server."""

    def __init__(
        self, ctx: UpstreamContext, maxsize: int = 256, cache: TileCache | None = None
    ) -> None:
        self._ctx = ctx
        self._cache = cache
        self._opened: LRUCache[str, _Opened] = LRUCache(maxsize=maxsize)
        self._opening: SingleFlight[tuple[str, str], Source] = SingleFlight()

    async def get(self, record: ServerRecord) -> Source:
        """The source of ``record``: the one opened before, or a new one."""
        opened = self._opened.get(record.id)
        # The config is compared too: two edits within one timestamp tick still differ.
        if (
            opened is not None
            and opened.updated_at == record.updated_at
            and opened.config == record.config
        ):
            return opened.source
        # The config's JSON is part of the key for the same reason as above.
        key = (record.id, record.updated_at + orjson.dumps(record.config).decode())
        return await self._opening.run(key, lambda: self._open(record))

    async def _open(self, record: ServerRecord) -> Source:
        config = parse_config(record.config)
        with owned_by(record.id):  # its connections count against the server's quota
            source = await open_source(config, self._ctx)
        if self._cache is not None:
            fingerprint = self.fingerprint(config)
            if isinstance(source, TileSource):
                source = CachedTileSource(source, self._cache, fingerprint, config.cache_ttl)
            else:
                source = CachedBBoxSource(source, self._cache, fingerprint, config.cache_ttl)
        self._opened[record.id] = _Opened(record.updated_at, record.config, source)
        return source

    def fingerprint(self, config: ServerBase) -> str:
        """The cache fingerprint of ``config``: everything that changes its pixels."""
        return self._ctx.fingerprints.config(config)

    def forget(self, server_id: str) -> None:
        """Drop the source of a deleted server."""
        self._opened.pop(server_id, None)

    def __len__(self) -> int:
        """How many sources are kept."""
        return len(self._opened)
