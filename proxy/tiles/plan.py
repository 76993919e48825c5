"""How one saved server serves WebMercatorQuad tiles: pass through, render or metatile."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from proxy.schemas import ServerConfig
from proxy.tiles.cached import CachedTileSource
from proxy.tiles.matrix import bbox_zooms, passthrough_zooms, rendered_zooms
from streaming.sources import BBoxSource, Source, TileSource


class Way(enum.Enum):
    """How a tile is made."""

    PASSTHROUGH = "passthrough"  # the upstream tile, unchanged
    RENDERED = "rendered"  # read through the streaming reader from upstream tiles
    METATILE = "metatile"  # cut from one bbox request of N x N tiles


@attrs.frozen
class Scale:
    """The zooms a server serves at one tile size, and the source matrix of pass-through ones."""

    lo: int
    hi: int
    direct: dict[int, int]  # WebMercatorQuad zoom -> source matrix index


@attrs.define
class TilePlan:
    """A saved server as a tile server: its source, fingerprint and zooms per tile size."""

    server_id: str
    config: ServerConfig
    fingerprint: str
    source: Source
    _scales: dict[int, Scale] = attrs.field(factory=dict)
    # isinstance() of a runtime-checkable Protocol walks its members: ~4 % of a tile hit.
    _tiled: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._tiled = isinstance(self.source, TileSource)

    def scale(self, tile_px: int) -> Scale:
        """Zooms served at ``tile_px`` (computed once per size)."""
        found = self._scales.get(tile_px)
        if found is None:
            found = self._scales[tile_px] = _scale(self.source, self.config, tile_px)
        return found

    def way(self, tile_px: int, z: int) -> Way:
        """How tile zoom ``z`` at ``tile_px`` is made."""
        if self._tiled:
            return Way.PASSTHROUGH if z in self.scale(tile_px).direct else Way.RENDERED
        return Way.METATILE

    @property
    def cached(self) -> CachedTileSource | None:
        """The cached tile source (None for bbox sources)."""
        return self.source if isinstance(self.source, CachedTileSource) else None

    @property
    def bbox_source(self) -> BBoxSource:
        """The source as a bbox source."""
        assert isinstance(self.source, BBoxSource)
        return self.source

    @property
    def tile_source(self) -> TileSource:
        """The source as a tile source."""
        assert isinstance(self.source, TileSource)
        return self.source

    def bounds(self) -> list[float]:
        """WGS84 bounds of the data, as known (a WMTS layer's), else the world."""
        plan: Any = getattr(self.source, "plan", None)
        found = getattr(getattr(plan, "layer", None), "wgs84_bounds", None)
        if found:
            return [float(v) for v in found]
        return [-180.0, -85.0511287798066, 180.0, 85.0511287798066]


def _scale(source: Source, config: ServerConfig, tile_px: int) -> Scale:
    if isinstance(source, TileSource):
        direct = passthrough_zooms(source.tms, source.min_zoom, source.max_zoom, tile_px)
        lo, hi = rendered_zooms(source.tms, source.min_zoom, source.max_zoom, tile_px)
        if direct:
            lo, hi = min(lo, *direct), max(hi, *direct)
        return Scale(lo, hi, direct)
    lo, hi = bbox_zooms(config.resolution, tile_px)
    return Scale(lo, hi, {})
