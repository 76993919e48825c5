"""The WMTS -> XYZ helper: an xyz server config for a GoogleMapsCompatible-like WMTS layer.

POST /servers/from-wmts answers it; it is not saved. The layer is chosen as the WMTS
source chooses it (:func:`proxy.upstream.wmts.plan_source`), restricted to Web Mercator
quad sets whose matrix identifiers are the zoom numbers, so ``{z}`` can name them.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

from proxy.schemas import WMTSConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from proxy.upstream.wmts import (
    SourcePlan,
    TileEndpoint,
    fill_template,
    load_capabilities,
    plan_source,
)
from proxy.upstream.wmts_capabilities import Layer, quad_zooms
from streaming.errors import SourceUnsupported
from streaming.grid import ground_resolution

XYZ_TILE_SIZES = (256, 512)
MAX_PREVIEW_LAT = 85.0  # inside Web Mercator's +-85.05 degrees


async def wmts_to_xyz(config: WMTSConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """An xyz server config for a WMTS layer with a GoogleMapsCompatible-like set.

    The template comes from the REST ResourceURL (or KVP GetTile) with the matrix, row
    and column as ``{z}``, ``{y}``, ``{x}``; the preview is the centre of the layer's
    WGS84BoundingBox; the resolution is the deepest matrix's ground m/px there.
    """
    connection = ServerConnection(config, ctx)
    caps = await load_capabilities(connection)
    plan: SourcePlan = await ctx.run(partial(plan_source, quad=True), caps, config)
    zooms = quad_zooms(plan.matrix_set)
    assert zooms is not None
    pairs = zip(plan.matrix_set.matrices, zooms, strict=True)
    offender = next(((m, z) for m, z in pairs if m.identifier != str(z)), None)
    if offender is not None:
        raise SourceUnsupported(
            f"the matrix identifiers of tile matrix set {plan.matrix_set.identifier!r} are not "
            f"zoom numbers ({offender[0].identifier!r} is zoom {offender[1]}), so no {{z}} "
            "template can name them",
            hint="use the wmts server type, which maps matrices itself",
        )
    tile_size = plan.matrix_set.matrices[0].tile_width
    if tile_size not in XYZ_TILE_SIZES:
        raise SourceUnsupported(f"tiles of {tile_size} px: an xyz server takes 256 or 512 px tiles")
    lat, lon = _preview(plan.layer, config)
    xyz: dict[str, Any] = {
        "type": "xyz",
        "name": config.name,
        "url": without_params(xyz_template(plan.endpoint), config.params),
        "min_zoom": zooms[plan.min_zoom],
        "max_zoom": zooms[plan.max_zoom],
        "tile_size": tile_size,
        "preview": {"lat": lat, "lon": lon},
        "resolution": ground_resolution(zooms[plan.max_zoom], lat, tile_size),
        "headers": dict(config.headers),
        "params": dict(config.params),
        "skip_ssl": config.skip_ssl,
        "max_concurrency": config.max_concurrency,
        "cache_ttl": config.cache_ttl,
    }
    if config.rate_limit is not None:
        xyz["rate_limit"] = config.rate_limit
    return xyz


def xyz_template(endpoint: TileEndpoint) -> str:
    """The endpoint's tile URL with ``{z}``, ``{x}``, ``{y}`` placeholders."""
    if endpoint.template is not None:
        values = {"tilematrix": "{z}", "tilerow": "{y}", "tilecol": "{x}"}
        return fill_template(endpoint.template, values, encode=False)
    assert endpoint.kvp_url is not None
    query = urlencode(endpoint.kvp_params)
    sep = "&" if urlsplit(endpoint.kvp_url).query else "?"
    url = endpoint.kvp_url.rstrip("?&")
    return f"{url}{sep}{query}&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}"


def without_params(url: str, names: Any) -> str:
    """``url`` without the query params ``names``: the xyz config sends them (masked) itself."""
    for name in names:
        pattern = rf"([?&]){re.escape(name)}=[^&#]*(&|$)"
        url = re.sub(pattern, lambda m: m.group(1) if m.group(2) else "", url)
    return url.rstrip("?&")


def _preview(layer: Layer, config: WMTSConfig) -> tuple[float, float]:
    if layer.wgs84_bounds is not None:
        west, south, east, north = layer.wgs84_bounds
        lat, lon = (south + north) / 2, (west + east) / 2
    elif config.preview is not None:
        lat, lon = config.preview.lat, config.preview.lon
    else:
        lat, lon = 0.0, 0.0
    return max(-MAX_PREVIEW_LAT, min(MAX_PREVIEW_LAT, lat)), max(-180.0, min(180.0, lon))
