"""Build the streaming source for a server config, whatever its type."""

from __future__ import annotations

from typing import Any

from proxy.schemas import ArcGISConfig, ServerConfig, WMSConfig, WMTSConfig, XYZConfig
from proxy.upstream.arcgis import describe_arcgis, open_arcgis
from proxy.upstream.base import UpstreamContext
from proxy.upstream.wms import describe_wms, open_wms
from proxy.upstream.wmts import describe_wmts, open_wmts
from proxy.upstream.xyz import XYZSource
from streaming.sources import Source


async def open_source(config: ServerConfig, ctx: UpstreamContext) -> Source:
    """The source for ``config``; WMS, WMTS and ArcGIS read their capabilities first."""
    if isinstance(config, XYZConfig):
        return XYZSource(config, ctx)
    if isinstance(config, WMSConfig):
        return await open_wms(config, ctx)
    if isinstance(config, WMTSConfig):
        return await open_wmts(config, ctx)
    if isinstance(config, ArcGISConfig):
        return await open_arcgis(config, ctx)
    raise TypeError(f"no adapter for {type(config).__name__}")


async def describe(config: ServerConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """What the upstream offers (layers, styles, formats, CRSs, grids), for a user to choose."""
    if isinstance(config, WMSConfig):
        return await describe_wms(config, ctx)
    if isinstance(config, WMTSConfig):
        return await describe_wmts(config, ctx)
    if isinstance(config, ArcGISConfig):
        return await describe_arcgis(config, ctx)
    return {
        "type": "xyz",
        "tile_matrix_set": "WebMercatorQuad",
        "tile_size": config.tile_size,
        "min_zoom": config.min_zoom,
        "max_zoom": config.max_zoom,
    }
