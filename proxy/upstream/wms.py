"""wms adapter (to be written)."""

from __future__ import annotations

from proxy.schemas import WMSConfig
from proxy.upstream.base import UpstreamContext
from streaming.sources import Source


async def open_wms(config: WMSConfig, ctx: UpstreamContext) -> Source:
    """Open a wms source."""
    raise NotImplementedError
