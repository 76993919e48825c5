"""ArcGIS REST MapServer and ImageServer sources: tile caches, ``export`` and ``exportImage``.

A cached service in the Web Mercator (Google/Bing) tiling scheme is read tile by tile
from ``/tile/{level}/{row}/{col}``. Any other service is rendered by ``export``
(MapServer) or ``exportImage`` (ImageServer), when the service allows it. Which one, and
what is :class:`streaming.errors.SourceUnsupported` (other tiling schemes, LERC caches),
is decided from the service info by :mod:`proxy.upstream.arcgis_service`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from morecantile import TileMatrixSet
from rasterio.crs import CRS

from proxy.net.client import UpstreamResponse
from proxy.schemas import ArcGISConfig
from proxy.upstream.arcgis_auth import ArcGISSession, looks_like_json, parse_json
from proxy.upstream.arcgis_service import (
    TileScheme,
    is_lerc_body,
    lerc_unsupported,
    max_image_size,
    read_mode,
    service_info,
    service_kind,
    summarize,
    wkid,
)
from proxy.upstream.base import UpstreamContext, check_image
from proxy.upstream.crs import crs_from_wkid
from streaming.errors import SourceBadResponse, SourceNotFound
from streaming.grid import WEB_MERCATOR_CRS, WGS84_CRS, web_mercator_tms
from streaming.resample import crop_tile, downsample_tiles
from streaming.sources import FetchedImage, Source
from streaming.types import BBox, TileIndex

# A level missing from the cache is built from the next finer one while that costs at
# most 4**MAX_LEVEL_GAP tiles, else cropped from the next coarser one.
MAX_LEVEL_GAP = 2
EXPORT_CRS = [WEB_MERCATOR_CRS, WGS84_CRS]


def tile_image(resp: UpstreamResponse, secrets: tuple[str, ...]) -> FetchedImage | None:
    """The image in a tile or export answer; ``None`` for no tile there.

    ArcGIS answers errors as JSON with HTTP 200 where an image was asked, so the body is
    checked before it is taken for an image.
    """
    if is_lerc_body(resp.body):
        raise lerc_unsupported("the tiles are")
    if resp.status not in (204, 404) and looks_like_json(resp.body):
        try:
            parse_json(resp, secrets)
        except SourceNotFound:
            return None
        raise SourceBadResponse("the service answered JSON where an image was expected")
    return check_image(resp, secrets)


class ArcGISTileSource:
    """A :class:`streaming.sources.TileSource` over a Web Mercator tile cache."""

    def __init__(self, session: ArcGISSession, scheme: TileScheme) -> None:
        self.session = session
        self.scheme = scheme
        self._levels = frozenset(scheme.levels)

    @property
    def tms(self) -> TileMatrixSet:
        """WebMercatorQuad at the cache's tile size."""
        return web_mercator_tms(self.scheme.tile_size)

    @property
    def min_zoom(self) -> int:
        """The coarsest level of the cache."""
        return self.scheme.levels[0]

    @property
    def max_zoom(self) -> int:
        """The finest level of the cache."""
        return self.scheme.levels[-1]

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """Fetch one tile; a level the cache skips is built from a neighbouring level."""
        if not self.min_zoom <= tile.z <= self.max_zoom:
            return None
        if tile.z in self._levels:
            return await self._fetch(tile)
        return await self._from_other_level(tile)

    async def _fetch(self, tile: TileIndex) -> FetchedImage | None:
        url = f"{self.session.config.url}/tile/{tile.z}/{tile.y}/{tile.x}"
        return tile_image(await self.session.get(url), self.session.secrets)

    async def _from_other_level(self, tile: TileIndex) -> FetchedImage | None:
        size, run = self.scheme.tile_size, self.session.connection.ctx.run
        max_pixels = self.session.connection.ctx.max_image_pixels
        finer = min(level for level in self._levels if level > tile.z)
        if finer - tile.z <= MAX_LEVEL_GAP:
            n = 1 << (finer - tile.z)
            children = [
                TileIndex(tile.x * n + i, tile.y * n + j, finer) for j in range(n) for i in range(n)
            ]
            images = await asyncio.gather(*(self._fetch(child) for child in children))
            if all(image is None for image in images):
                return None
            datas = [image.data if image else None for image in images]
            data: bytes = await run(downsample_tiles, datas, n, size, max_pixels)
        else:
            coarser = max(level for level in self._levels if level < tile.z)
            d = tile.z - coarser
            parent = await self._fetch(TileIndex(tile.x >> d, tile.y >> d, coarser))
            if parent is None:
                return None
            n = 1 << d
            data = await run(crop_tile, parent.data, n, tile.x % n, tile.y % n, size, max_pixels)
        return FetchedImage(data, "image/png")


class ArcGISExportSource:
    """A :class:`streaming.sources.BBoxSource` over ``export`` or ``exportImage``."""

    def __init__(self, session: ArcGISSession, info: dict[str, Any]) -> None:
        self.session = session
        self.kind = service_kind(session.config.url)
        native = crs_from_wkid(wkid(info.get("spatialReference") or {}))
        self._crs_list = [*EXPORT_CRS, *([native] if native and native not in EXPORT_CRS else [])]
        self._max_size = max_image_size(info)

    @property
    def crs_list(self) -> list[CRS]:
        """Web Mercator, WGS84, then the service's own EPSG CRS: ArcGIS reprojects on the fly.

        A service in an Esri-only CRS (wkid 1xxxxx unknown to EPSG) is read in the first two.
        """
        return self._crs_list

    @property
    def max_size(self) -> tuple[int, int]:
        """``maxImageWidth`` x ``maxImageHeight`` of the service."""
        return self._max_size

    def params(self, bbox: BBox, crs: CRS, width: int, height: int) -> dict[str, str]:
        """The query of one export request (x, y order even in EPSG:4326)."""
        srid = str(crs.to_epsg())
        params = {
            "bbox": ",".join(repr(float(v)) for v in bbox),
            "bboxSR": srid,
            "imageSR": srid,
            "size": f"{width},{height}",
            "f": "image",
        }
        if self.kind == "ImageServer":
            params["format"] = self.session.config.format or "png"
            params["interpolation"] = "RSP_BilinearInterpolation"
        else:
            params["format"] = self.session.config.format or "png32"
            params["transparent"] = "true"
        return params

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        """Render ``bbox`` at ``width`` x ``height``."""
        endpoint = "exportImage" if self.kind == "ImageServer" else "export"
        url = f"{self.session.config.url}/{endpoint}"
        resp = await self.session.get(url, self.params(bbox, crs, width, height))
        image = tile_image(resp, self.session.secrets)
        if image is None:
            raise SourceBadResponse(f"{endpoint} answered no image (HTTP {resp.status})")
        return image


def choose_source(session: ArcGISSession, info: dict[str, Any]) -> Source:
    """The tile source of a supported cache, else the export source (see :func:`read_mode`)."""
    scheme = read_mode(info, service_kind(session.config.url))
    if scheme is None:
        return ArcGISExportSource(session, info)
    return ArcGISTileSource(session, scheme)


async def open_arcgis(config: ArcGISConfig, ctx: UpstreamContext) -> Source:
    """Open an ArcGIS MapServer or ImageServer (see :func:`choose_source`)."""
    session = ArcGISSession(config, ctx)
    return choose_source(session, await service_info(session))


async def describe_arcgis(config: ArcGISConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """What the service is and how it will be read: kind, tiling, levels, CRS, extent."""
    info = await service_info(ArcGISSession(config, ctx))
    return summarize(info, service_kind(config.url))
