"""wmts adapter (to be written)."""

from __future__ import annotations

from proxy.schemas import WMTSConfig
from proxy.upstream.base import UpstreamContext
from streaming.sources import Source


async def open_wmts(config: WMTSConfig, ctx: UpstreamContext) -> Source:
    """Open a wmts source."""
    raise NotImplementedError
