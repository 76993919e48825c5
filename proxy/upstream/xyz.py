"""XYZ tile servers: a URL template with {z} {x} {y}, {-y}, {s} and {q}."""

from __future__ import annotations

import itertools

from morecantile import TileMatrixSet

from proxy.schemas import XYZConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from streaming.grid import web_mercator_tms
from streaming.sources import FetchedImage
from streaming.types import TileIndex


def quadkey(tile: TileIndex) -> str:
    """The Bing quadkey of a tile."""
    digits = []
    for level in range(tile.z, 0, -1):
        mask = 1 << (level - 1)
        digits.append(str((1 if tile.x & mask else 0) + (2 if tile.y & mask else 0)))
    return "".join(digits)


def tile_url(template: str, tile: TileIndex, subdomain: str = "") -> str:
    """Fill a template's placeholders for ``tile``."""
    return (
        template.replace("{z}", str(tile.z))
        .replace("{x}", str(tile.x))
        .replace("{-y}", str((1 << tile.z) - 1 - tile.y))
        .replace("{y}", str(tile.y))
        .replace("{q}", quadkey(tile))
        .replace("{s}", subdomain)
    )


class XYZSource:
    """A :class:`streaming.sources.TileSource` over an XYZ template (WebMercatorQuad)."""

    def __init__(self, config: XYZConfig, ctx: UpstreamContext) -> None:
        self.config = config
        self.connection = ServerConnection(config, ctx)
        self._subdomains = itertools.cycle(config.subdomains or [""])

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
        return tile_url(self.config.url, tile, next(self._subdomains))

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """Fetch one tile; outside the zoom range there is none."""
        if not self.min_zoom <= tile.z <= self.max_zoom:
            return None
        return await self.connection.get_image(self.url_for(tile))
