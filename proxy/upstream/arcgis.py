"""arcgis adapter (to be written)."""

from __future__ import annotations

from proxy.schemas import ArcGISConfig
from proxy.upstream.base import UpstreamContext
from streaming.sources import Source


async def open_arcgis(config: ArcGISConfig, ctx: UpstreamContext) -> Source:
    """Open a arcgis source."""
    raise NotImplementedError
