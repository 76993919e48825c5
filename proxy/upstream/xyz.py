"""XYZ tile servers: a URL template in any dialect of :mod:`proxy.upstream.templates`."""

from __future__ import annotations

import itertools

from morecantile import TileMatrixSet

from proxy.schemas import XYZConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from proxy.upstream.templates import fill, parse, quadkey
from streaming.grid import web_mercator_tms
from streaming.sources import FetchedImage
from streaming.types import TileIndex

__all__ = ["XYZSource", "quadkey", "tile_url"]


def tile_url(template: str, tile: TileIndex, subdomain: str = "") -> str:
    """Fill a template's placeholders for ``tile`` (no keys, no zoom offset)."""
    return fill(parse(template), tile, subdomain=subdomain)


class XYZSource:
    """A :class:`streaming.sources.TileSource` over an XYZ template (WebMercatorQuad)."""

    def __init__(self, config: XYZConfig, ctx: UpstreamContext) -> None:
        self.config = config
        self.connection = ServerConnection(config, ctx)
        self._subdomains = itertools.cycle(config.subdomains or [""])
        self._tokens = parse(config.url)

    @property
    def tms(self) -> TileMatrixSet:
        """WebMercatorQuad at the configured tile size."""
        return web_mercator_tms(self.config.tile_size)

    @property
    def min_zoom(self) -> int:
        """Configured min zoom."""
        return self.config.min_zoom

    @property
    def max_zoom(self) -> int:
        """Configured max zoom."""
        return self.config.max_zoom

    def url_for(self, tile: TileIndex) -> str:
        """The URL of ``tile``; subdomains rotate from call to call, as browsers do."""
        return fill(
            self._tokens,
            tile,
            subdomain=next(self._subdomains),
            zoom_offset=self.config.zoom_offset,
            tile_size=self.config.tile_size,
            values=self.config.keys,
        )

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """Fetch one tile; outside the zoom range there is none."""
        if not self.min_zoom <= tile.z <= self.max_zoom:
            return None
        return await self.connection.get_image(self.url_for(tile))
