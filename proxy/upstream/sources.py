"""Build the streaming source for a server config, whatever its type."""

from __future__ import annotations

from proxy.schemas import ArcGISConfig, ServerConfig, WMSConfig, WMTSConfig, XYZConfig
from proxy.upstream.arcgis import open_arcgis
from proxy.upstream.base import UpstreamContext
from proxy.upstream.wms import open_wms
from proxy.upstream.wmts import open_wmts
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
