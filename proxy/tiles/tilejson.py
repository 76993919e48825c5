"""TileJSON 3.0.0 of a saved server, for QGIS, Leaflet, MapLibre and OpenLayers.

The tile URL is absolute, built from the scheme and host the client used. Behind a
reverse proxy those are the proxy's own, passed in ``X-Forwarded-Proto`` and
``X-Forwarded-Host``; those headers are honoured only with ``trust_forwarded = true``,
because any client can send them: only a proxy that sets (and overwrites) them makes
them true.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from aiohttp import web

from proxy.tiles.matrix import mercator_zoom
from proxy.tiles.plan import TilePlan


def base_url(request: web.Request, trust_forwarded: bool) -> str:
    """``scheme://host`` of the service as the client reached it."""
    scheme, host = request.scheme, request.host
    if trust_forwarded:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        fwd_host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        scheme = proto if proto in ("http", "https") else scheme
        host = fwd_host or host
    return f"{scheme}://{host}"


def tilejson(
    plan: TilePlan, base: str, token: str | None = None, ext: str = "", scale: int = 1
) -> dict[str, Any]:
    """The TileJSON document of ``plan``'s server; tile URLs carry ``token`` when given."""
    zooms = plan.scale(256 * scale)
    suffix = ("@2x" if scale == 2 else "") + (f".{ext}" if ext else "")
    url = f"{base}/servers/{quote(plan.server_id)}/tiles/{{z}}/{{x}}/{{y}}{suffix}"
    if token:
        url += "?token=" + quote(token, safe="")
    bounds = plan.bounds()
    preview = plan.config.preview
    if preview is not None:
        lon, lat = preview.lon, preview.lat
    else:
        lon, lat = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    zoom = zooms.lo
    if plan.config.resolution:
        ground = plan.config.resolution / math.cos(math.radians(lat))
        zoom = round(mercator_zoom(ground, 256 * scale)) - 2  # an overview of that detail
    doc: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": plan.config.name,
        "scheme": "xyz",
        "tiles": [url],
        "minzoom": zooms.lo,
        "maxzoom": zooms.hi,
        "bounds": bounds,
        "center": [lon, lat, min(max(zoom, zooms.lo), zooms.hi)],
    }
    if scale == 2:
        doc["tileSize"] = 512  # MapLibre reads it; others ignore it
    return doc
