"""ArcGIS service info (``?f=json``): what a MapServer or ImageServer is and how to read it.

Rules only, no requests past the one that fetches the info: whether the service has a
tile cache, whether that cache is the Web Mercator (Google/Bing) scheme this service
reads tile by tile, whether it is LERC (values, not imagery), and whether ``export``
may render it instead. :mod:`proxy.upstream.arcgis` builds the source these rules pick.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from proxy.upstream.arcgis_auth import ArcGISSession
from streaming.errors import SourceUnsupported
from streaming.grid import (
    MAX_ZOOM,
    MERCATOR_HALF_EXTENT,
    RES_TOLERANCE,
    is_web_mercator,
    mercator_resolution,
)

Kind = Literal["MapServer", "ImageServer"]
Mode = Literal["tiles", "export"]
TILE_SIZES = (256, 512)
LERC_MAGIC = (b"CntZImage", b"Lerc2 ")  # LERC 1 and LERC 2 blobs start so
ORIGIN_TOLERANCE = 0.01  # metres
DEFAULT_MAX_IMAGE = 4096
WEB_MERCATOR_HINT = "only the Web Mercator (Google/Bing) tiling scheme is supported"


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
    """True when the service info declares a tile cache.

    Esri often writes only ``tileInfo`` (hosted tile layers, many ImageServers): that is a
    cache too, unless ``singleFusedMapCache: false`` or ``cacheType: "None"`` says not.
    """
    if not isinstance(info.get("tileInfo"), dict):
        return False
    fused, cache_type = info.get("singleFusedMapCache"), info.get("cacheType")
    if fused is True or cache_type not in (None, "None"):
        return True
    return fused is not False and cache_type != "None"


def tiles_only(info: dict[str, Any]) -> bool:
    """True when the capabilities say ``TilesOnly``: export is never allowed."""
    return "tilesonly" in _capabilities(info)


def _capabilities(info: dict[str, Any]) -> set[str]:
    return {c.strip().lower() for c in str(info.get("capabilities", "")).split(",")}


def allows_export(info: dict[str, Any], kind: Kind) -> bool:
    """True when the service may render bboxes (capability ``Map`` or ``Image``)."""
    if tiles_only(info):
        return False
    return ("image" if kind == "ImageServer" else "map") in _capabilities(info)


def is_lerc(info: dict[str, Any]) -> bool:
    """True when the tile cache is LERC-compressed."""
    tile_info = info.get("tileInfo")
    fmt = tile_info.get("format", "") if isinstance(tile_info, dict) else ""
    return str(fmt).strip().upper().startswith("LERC")


def is_lerc_body(body: bytes) -> bool:
    """True when a tile's bytes are a LERC blob (a cache that declares JPEG can still be LERC)."""
    return body.startswith(LERC_MAGIC)


def lerc_unsupported(what: str) -> SourceUnsupported:
    """The error for a LERC-compressed cache."""
    return SourceUnsupported(
        f"{what} LERC-compressed (raw elevation or multiband values), which is not supported",
        hint="use a service whose tile cache is JPEG, PNG or MIXED imagery",
    )


def tile_scheme(info: dict[str, Any]) -> TileScheme:
    """The Web Mercator scheme of a cached service; :class:`SourceUnsupported` for any other."""
    tile_info: dict[str, Any] = info["tileInfo"]
    fmt = str(tile_info.get("format", ""))
    if is_lerc(info):
        raise lerc_unsupported(f"the tile cache (tileInfo.format {fmt}) is")
    sr = tile_info.get("spatialReference") or info.get("spatialReference") or {}
    origin = tile_info.get("origin") or {}
    ox, oy = origin.get("x"), origin.get("y")
    where = f"tiling scheme in wkid {wkid(sr)} (origin {ox}, {oy})"
    if not any(isinstance(w, int) and is_web_mercator(w) for w in _wkids(sr)):
        raise SourceUnsupported(f"the {where} is not supported", hint=WEB_MERCATOR_HINT)
    e = MERCATOR_HALF_EXTENT
    if not _near(ox, -e, ORIGIN_TOLERANCE) or not _near(oy, e, ORIGIN_TOLERANCE):
        raise SourceUnsupported(
            f"the {where} is not supported: the origin is not (-{e}, {e})", hint=WEB_MERCATOR_HINT
        )
    size = tile_info.get("rows")
    if size != tile_info.get("cols") or size not in TILE_SIZES:
        raise SourceUnsupported(
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
            raise SourceUnsupported(
                f"the {where} is not supported: level {level} has {res} m/px where Web "
                f"Mercator has {expected}",
                hint=WEB_MERCATOR_HINT,
            )
        levels.append(level)
    if not levels:
        raise SourceUnsupported("the tile cache declares no levels (tileInfo.lods is empty)")
    return TileScheme(size, tuple(sorted(levels)), fmt)


def _near(value: Any, target: float, tolerance: float) -> bool:
    return isinstance(value, int | float) and abs(value - target) <= tolerance


def _wkids(sr: dict[str, Any]) -> set[Any]:
    return {sr.get("wkid"), sr.get("latestWkid")}


def wkid(sr: dict[str, Any]) -> Any:
    """The wkid of a spatialReference, the latest one first."""
    return sr.get("latestWkid") or sr.get("wkid")


def read_mode(info: dict[str, Any], kind: Kind) -> TileScheme | None:
    """The scheme to read a supported tile cache by, else ``None`` to render by export.

    A cache in another scheme falls back to export/exportImage when the service's
    capabilities allow it (``Map``/``Image``); otherwise it is :class:`SourceUnsupported`.
    A LERC cache is never exported: it holds values (elevation), not imagery.
    """
    if is_lerc(info):  # wherever tileInfo says so, tiled or not: values, never imagery
        fmt = info["tileInfo"].get("format")
        raise lerc_unsupported(f"the tile cache (tileInfo.format {fmt}) is")
    if not is_tiled(info):
        if tiles_only(info):
            raise SourceUnsupported(
                "the service is TilesOnly (export is disabled) and declares no tile cache",
                hint="use a service with a Web Mercator tile cache or with export enabled",
            )
        return None
    try:
        return tile_scheme(info)
    except SourceUnsupported as exc:
        if tiles_only(info):
            raise SourceUnsupported(
                f"the service is TilesOnly (export is disabled) and {exc.message}",
                hint=WEB_MERCATOR_HINT,
            ) from None
        if not allows_export(info, kind):
            raise
        return None


def max_image_size(info: dict[str, Any]) -> tuple[int, int]:
    """``maxImageWidth`` x ``maxImageHeight`` of the service (4096 when not stated)."""
    return (
        _positive_int(info.get("maxImageWidth"), DEFAULT_MAX_IMAGE),
        _positive_int(info.get("maxImageHeight"), DEFAULT_MAX_IMAGE),
    )


def _positive_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


async def service_info(session: ArcGISSession) -> dict[str, Any]:
    """The service's ``?f=json`` document, cached per access fingerprint."""
    return await session.service_info()


def summarize(info: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """What the service is and how it will be read: kind, tiling, levels, CRS, extent, mode."""
    sr = info.get("spatialReference") or {}
    extent = info.get("fullExtent") or info.get("extent") or {}
    described: dict[str, Any] = {
        "kind": kind,
        "tiled": is_tiled(info),
        "spatial_reference": wkid(sr),
        "extent": [extent.get(k) for k in ("xmin", "ymin", "xmax", "ymax")] if extent else None,
        "extent_spatial_reference": wkid(extent.get("spatialReference") or sr),
        "max_image_size": list(max_image_size(info)),
        "export_allowed": allows_export(info, kind),
        "scheme": None,
    }
    if is_tiled(info):
        described.update(_summarize_cache(info))
    try:
        mode: Mode = "export" if read_mode(info, kind) is None else "tiles"
    except SourceUnsupported as exc:
        return {**described, "mode": None, "unsupported": exc.message}
    return {**described, "mode": mode}


def _summarize_cache(info: dict[str, Any]) -> dict[str, Any]:
    tile_info: dict[str, Any] = info["tileInfo"]
    sr = tile_info.get("spatialReference") or info.get("spatialReference") or {}
    described = {
        "tile_format": tile_info.get("format"),
        "tile_size": tile_info.get("cols"),
        "tile_spatial_reference": wkid(sr),
        "levels": sorted(lod.get("level") for lod in tile_info.get("lods") or []),
        "scheme": "web-mercator",
    }
    try:
        tile_scheme(info)
    except SourceUnsupported as exc:
        described.update(scheme="unsupported", scheme_problem=exc.message)
    return described
