"""ArcGIS REST MapServer and ImageServer: tile caches, ``export`` and ``exportImage``.

A cached service in the Web Mercator (Google/Bing) tiling scheme is read tile by tile
from ``/tile/{level}/{row}/{col}``. Any other service is rendered by ``export``
(MapServer) or ``exportImage`` (ImageServer), when the service allows it. Other tiling
schemes and LERC caches that cannot be exported are :class:`proxy.errors.Unsupported`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

import attrs
import numpy as np
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.errors import CRSError

from proxy.errors import Unsupported
from proxy.net.client import UpstreamResponse
from proxy.schemas import ArcGISConfig
from proxy.upstream.arcgis_auth import ArcGISSession, looks_like_json, parse_json
from proxy.upstream.base import UpstreamContext, check_image
from streaming.decode import RGBA, decode_rgba
from streaming.encode import encode_png
from streaming.errors import SourceBadResponse, SourceNotFound
from streaming.grid import MAX_ZOOM, MERCATOR_HALF_EXTENT, mercator_resolution, web_mercator_tms
from streaming.sources import FetchedImage, Source
from streaming.types import BBox, TileIndex

Kind = Literal["MapServer", "ImageServer"]
WEB_MERCATOR_WKIDS = frozenset({102100, 3857, 102113, 900913})
TILE_SIZES = (256, 512)
LERC_MAGIC = (b"CntZImage", b"Lerc2 ")
ORIGIN_TOLERANCE = 0.01  # metres
RES_TOLERANCE = 1e-6  # relative
DEFAULT_MAX_IMAGE = 4096
# A level missing from the cache is built from the next finer one while that costs at
# most 4**MAX_LEVEL_GAP tiles, else cropped from the next coarser one.
MAX_LEVEL_GAP = 2
EXPORT_CRS = [CRS.from_epsg(3857), CRS.from_epsg(4326)]


@attrs.frozen
class TileScheme:
    """The parts of a supported ``tileInfo`` the tile source needs."""

    tile_size: int
    levels: tuple[int, ...]  # sorted; a level is the WebMercatorQuad zoom of that number
    format: str


def service_kind(url: str) -> Kind:
    """``MapServer`` or ``ImageServer``, from the end of the service URL."""
    return "ImageServer" if url.endswith("/ImageServer") else "MapServer"


def is_tiled(info: dict[str, Any]) -> bool:
    """True when the service info declares a tile cache."""
    cached = info.get("singleFusedMapCache") is True or info.get("cacheType") not in (None, "None")
    return isinstance(info.get("tileInfo"), dict) and cached


def allows_export(info: dict[str, Any], kind: Kind) -> bool:
    """True when the service may render bboxes (capability ``Map`` or ``Image``)."""
    capabilities = {c.strip().lower() for c in str(info.get("capabilities", "")).split(",")}
    return ("image" if kind == "ImageServer" else "map") in capabilities


def is_lerc(info: dict[str, Any]) -> bool:
    """True when the tile cache is LERC-compressed."""
    tile_info = info.get("tileInfo") or {}
    return str(tile_info.get("format", "")).upper().startswith("LERC")


def lerc_unsupported(what: str) -> Unsupported:
    """The error for a LERC-compressed cache."""
    return Unsupported(
        f"{what} LERC-compressed (raw elevation or multiband values), which is not supported",
        hint="use a service whose tile cache is JPEG, PNG or MIXED imagery",
    )


def tile_scheme(info: dict[str, Any]) -> TileScheme:
    """The Web Mercator scheme of a cached service; :class:`Unsupported` for any other."""
    tile_info: dict[str, Any] = info["tileInfo"]
    fmt = str(tile_info.get("format", ""))
    if is_lerc(info):
        raise lerc_unsupported(f"the tile cache (tileInfo.format {fmt}) is")
    sr = tile_info.get("spatialReference") or info.get("spatialReference") or {}
    wkids = {sr.get("wkid"), sr.get("latestWkid")}
    origin = tile_info.get("origin") or {}
    ox, oy = origin.get("x"), origin.get("y")
    where = f"tiling scheme in wkid {sr.get('latestWkid') or sr.get('wkid')} (origin {ox}, {oy})"
    hint = "only the Web Mercator (Google/Bing) tiling scheme is supported"
    if not wkids & WEB_MERCATOR_WKIDS:
        raise Unsupported(f"the {where} is not supported", hint=hint)
    e = MERCATOR_HALF_EXTENT
    if not _near(ox, -e, ORIGIN_TOLERANCE) or not _near(oy, e, ORIGIN_TOLERANCE):
        raise Unsupported(f"the {where} is not supported: the origin is not (-{e}, {e})", hint=hint)
    size = tile_info.get("rows")
    if size != tile_info.get("cols") or size not in TILE_SIZES:
        raise Unsupported(
            f"tiles of {tile_info.get('cols')}x{size} px are not supported", hint="256 or 512 px"
        )
    levels = []
    for lod in tile_info.get("lods") or []:
        level, res = lod.get("level"), lod.get("resolution")
        if isinstance(level, int) and level > MAX_ZOOM:
            continue  # deeper than WebMercatorQuad goes; never read
        valid = isinstance(level, int) and level >= 0
        expected = mercator_resolution(level, size) if valid else math.nan
        if not _near(res, expected, RES_TOLERANCE * expected):
            raise Unsupported(
                f"the {where} is not supported: level {level} has {res} m/px where Web "
                f"Mercator has {expected}",
                hint=hint,
            )
        levels.append(level)
    if not levels:
        raise Unsupported("the tile cache declares no levels (tileInfo.lods is empty)")
    return TileScheme(size, tuple(sorted(levels)), fmt)


def _near(value: Any, target: float, tolerance: float) -> bool:
    return isinstance(value, int | float) and abs(value - target) <= tolerance


def tile_image(resp: UpstreamResponse, secrets: tuple[str, ...]) -> FetchedImage | None:
    """The image in a tile or export answer; ``None`` for no tile there.

    ArcGIS answers errors as JSON with HTTP 200 where an image was asked, so the body is
    checked before it is taken for an image.
    """
    if resp.body.startswith(LERC_MAGIC):
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


def downsample_tiles(datas: list[bytes | None], n: int, size: int, max_pixels: int) -> bytes:
    """One ``size`` px PNG from ``n`` x ``n`` finer tiles (row by row), alpha-weighted."""
    canvas = np.zeros((4, size * n, size * n), dtype=np.float32)
    for k, data in enumerate(datas):
        if data is not None:
            j, i = divmod(k, n)
            rgba = _sized(decode_rgba(data, max_pixels=max_pixels), size)
            canvas[:, j * size : (j + 1) * size, i * size : (i + 1) * size] = rgba
    canvas[:3] *= canvas[3] / 255
    blocks = canvas.reshape(4, size, n, size, n).sum(axis=(2, 4))
    alpha = blocks[3]
    out = np.zeros((4, size, size), dtype=np.uint8)
    covered = alpha > 0
    out[:3, covered] = np.clip(np.round(blocks[:3, covered] * 255 / alpha[covered]), 0, 255)
    out[3] = np.round(alpha / (n * n)).astype(np.uint8)
    return encode_png(out)


def crop_tile(data: bytes, n: int, col: int, row: int, size: int, max_pixels: int) -> bytes:
    """The (col, row) cell of an ``n`` x ``n`` split of a coarser tile, upsampled to ``size``."""
    rgba = _sized(decode_rgba(data, max_pixels=max_pixels), size)
    part = size // n
    crop = rgba[:, row * part : (row + 1) * part, col * part : (col + 1) * part]
    return encode_png(np.ascontiguousarray(crop.repeat(n, axis=1).repeat(n, axis=2)))


def _sized(rgba: RGBA, size: int) -> RGBA:
    if rgba.shape[1:] != (size, size):
        raise SourceBadResponse(f"a tile is {rgba.shape[2]}x{rgba.shape[1]} px, not {size}")
    return rgba


class ArcGISExportSource:
    """A :class:`streaming.sources.BBoxSource` over ``export`` or ``exportImage``."""

    def __init__(self, session: ArcGISSession, info: dict[str, Any]) -> None:
        self.session = session
        self.kind = service_kind(session.config.url)
        self._crs_list = [*EXPORT_CRS, *_native_crs(info)]
        self._max_size = (
            _positive_int(info.get("maxImageWidth"), DEFAULT_MAX_IMAGE),
            _positive_int(info.get("maxImageHeight"), DEFAULT_MAX_IMAGE),
        )

    @property
    def crs_list(self) -> list[CRS]:
        """Web Mercator, WGS84, then the service's own EPSG CRS: ArcGIS reprojects on the fly."""
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


def _native_crs(info: dict[str, Any]) -> list[CRS]:
    """The service's CRS when it is an EPSG code other than those of :data:`EXPORT_CRS`."""
    sr = info.get("spatialReference") or {}
    wkid = sr.get("latestWkid") or sr.get("wkid")
    if not isinstance(wkid, int) or wkid in WEB_MERCATOR_WKIDS or wkid == 4326:
        return []
    try:
        return [CRS.from_epsg(wkid)]
    except CRSError:  # an Esri code (1xxxxx), unknown to EPSG
        return []


def _positive_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


async def service_info(session: ArcGISSession) -> dict[str, Any]:
    """The service's ``?f=json`` document, cached per access fingerprint."""
    return await session.service_info()


def choose_source(session: ArcGISSession, info: dict[str, Any]) -> Source:
    """The tile source of a supported cache, else the export source if the service allows it.

    A cache in another scheme falls back to export/exportImage when the service's
    capabilities allow it (``Map``/``Image``); otherwise the scheme is :class:`Unsupported`.
    A LERC cache is never exported: it holds values (elevation), not imagery.
    """
    if not is_tiled(info):
        return ArcGISExportSource(session, info)
    try:
        return ArcGISTileSource(session, tile_scheme(info))
    except Unsupported:
        if is_lerc(info) or not allows_export(info, service_kind(session.config.url)):
            raise
        return ArcGISExportSource(session, info)


async def open_arcgis(config: ArcGISConfig, ctx: UpstreamContext) -> Source:
    """Open an ArcGIS MapServer or ImageServer (see :func:`choose_source`)."""
    session = ArcGISSession(config, ctx)
    return choose_source(session, await service_info(session))


async def describe_arcgis(config: ArcGISConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """What the service is and how it will be read: kind, tiling, levels, CRS, extent."""
    session = ArcGISSession(config, ctx)
    info = await service_info(session)
    kind = service_kind(config.url)
    sr = info.get("spatialReference") or {}
    extent = info.get("fullExtent") or info.get("extent") or {}
    described: dict[str, Any] = {
        "kind": kind,
        "tiled": is_tiled(info),
        "spatial_reference": _wkid(sr),
        "extent": [extent.get(k) for k in ("xmin", "ymin", "xmax", "ymax")] if extent else None,
        "extent_spatial_reference": _wkid(extent.get("spatialReference") or sr),
        "max_image_size": list(ArcGISExportSource(session, info).max_size),
        "export_allowed": allows_export(info, kind),
        "scheme": None,
    }
    if is_tiled(info):
        described.update(_describe_cache(info))
    try:
        source = choose_source(session, info)
    except Unsupported as exc:
        return {**described, "mode": None, "unsupported": exc.message}
    return {**described, "mode": "tiles" if isinstance(source, ArcGISTileSource) else "export"}


def _describe_cache(info: dict[str, Any]) -> dict[str, Any]:
    tile_info: dict[str, Any] = info["tileInfo"]
    sr = tile_info.get("spatialReference") or info.get("spatialReference") or {}
    described = {
        "tile_format": tile_info.get("format"),
        "tile_size": tile_info.get("cols"),
        "tile_spatial_reference": _wkid(sr),
        "levels": sorted(lod.get("level") for lod in tile_info.get("lods") or []),
        "scheme": "web-mercator",
    }
    try:
        tile_scheme(info)
    except Unsupported as exc:
        described.update(scheme="unsupported", scheme_problem=exc.message)
    return described


def _wkid(sr: dict[str, Any]) -> Any:
    return sr.get("latestWkid") or sr.get("wkid")
