"""A GDAL_WMS (TMS mini-driver) description of an image's tile route.

``rasterio.open``, ``gdal_translate`` and QGIS open it as a 4-band (RGBA) raster in
EPSG:3857. GDAL asks tile ``(TileX >> k) + col`` of level ``TileLevel - k`` for overview
``k`` (frmts/wms: ``m_data_window.m_tx >> level``), so the data window starts on a tile
boundary of the coarsest overview: its corner is the image's top-left corner rounded out
to tiles of level ``TileLevel - OverviewCount``. The margin this adds around the image
is transparent (those tiles are answered empty without a read).
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from proxy.images.store import Footprint
from streaming import grid as tiling

TILE = 256
MAX_OVERVIEWS = 4  # 16x coarser; the margin is then at most 15 tiles a side


def gdal_wms_xml(place: Footprint, tile_url: str) -> str:
    """The description; ``tile_url`` holds ``${z}``, ``${x}`` and ``${y}``."""
    z = place.max_zoom
    overviews = min(z, MAX_OVERVIEWS)
    step = 2**overviews  # tiles of level z per tile of the coarsest overview
    size = tiling.EARTH_CIRCUMFERENCE / 2**z  # metres per tile of level z
    half = tiling.MERCATOR_HALF_EXTENT
    m = place.mercator
    x0 = _floor_to(math.floor((m.left + half) / size), step)
    y0 = _floor_to(math.floor((half - m.top) / size), step)
    x1 = _ceil_to(math.ceil((m.right + half) / size), step)
    y1 = _ceil_to(math.ceil((half - m.bottom) / size), step)
    x1, y1 = min(x1, 2**z), min(y1, 2**z)
    left, top = -half + x0 * size, half - y0 * size
    right, bottom = -half + x1 * size, half - y1 * size
    return f"""<GDAL_WMS>
  <Service name="TMS">
    <ServerUrl>{escape(tile_url)}</ServerUrl>
  </Service>
  <DataWindow>
    <UpperLeftX>{left!r}</UpperLeftX>
    <UpperLeftY>{top!r}</UpperLeftY>
    <LowerRightX>{right!r}</LowerRightX>
    <LowerRightY>{bottom!r}</LowerRightY>
    <SizeX>{(x1 - x0) * TILE}</SizeX>
    <SizeY>{(y1 - y0) * TILE}</SizeY>
    <TileX>{x0}</TileX>
    <TileY>{y0}</TileY>
    <TileLevel>{z}</TileLevel>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>{TILE}</BlockSizeX>
  <BlockSizeY>{TILE}</BlockSizeY>
  <BandsCount>4</BandsCount>
  <DataType>Byte</DataType>
  <OverviewCount>{overviews}</OverviewCount>
  <ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>
  <MaxConnections>8</MaxConnections>
</GDAL_WMS>
"""


def _floor_to(value: int, step: int) -> int:
    return value - value % step


def _ceil_to(value: int, step: int) -> int:
    return -(-value // step) * step
