"""Why a test-connection preview holds no data, told precisely.

A place outside the layer, a resolution finer than the deepest zoom with data there, or
levels numbered one off (MapProxy's TMS): each is found with a few extra tile requests
around the place, decoded off the event loop.
"""

from __future__ import annotations

import math

from morecantile import TileMatrixSet
from pyproj import Transformer

from proxy.errors import LevelsShifted, NoData, ResolutionNotSupported
from proxy.findings import Finding
from proxy.schemas import ServerConfig, XYZConfig
from proxy.upstream.base import UpstreamContext
from proxy.upstream.xyz import XYZSource
from streaming import errors as se
from streaming.decode import decode_rgba, is_blank
from streaming.grid import is_web_mercator, tile_for_lonlat, tile_transform
from streaming.reader import ReadResult
from streaming.sources import Source, TileSource
from streaming.types import TileIndex

METRES_PER_DEGREE = 2 * math.pi * 6378137.0 / 360


async def check_data(
    source: Source,
    config: ServerConfig,
    read: ReadResult,
    place: tuple[float, float],
    ctx: UpstreamContext,
) -> list[Finding]:
    """Findings of a preview with data; raise, saying why, when it holds none."""
    if read.requests == 0:
        raise NoData(
            "this place is outside the source's tile matrix set",
            hint="choose a lat/lon inside the layer's bounds",
        )
    if has_any_data(read):
        if not (read.missing or read.blank):
            return []
        count = read.missing + read.blank
        message = f"{count} of {read.requests} upstream requests had no data"
        return [Finding("partial_data", "info", message)]
    if isinstance(config, XYZConfig) and config.zoom_offset == 0 and read.zoom is not None:
        await detect_shifted_levels(config, ctx, place, read.zoom)
    if isinstance(source, TileSource) and read.zoom is not None:
        await explain_missing_zoom(source, ctx, place, read.zoom)
    raise NoData(
        "the upstream returned no data (missing, empty or blank images) at this place",
        hint="check the location (lat/lon) and that the layer covers it",
    )


def has_any_data(read: ReadResult) -> bool:
    """Whether some upstream answer of ``read`` put data on it."""
    return read.missing + read.blank < read.requests and bool(read.rgba[3].any())


async def detect_shifted_levels(
    config: XYZConfig, ctx: UpstreamContext, place: tuple[float, float], zoom: int
) -> None:
    """Raise :class:`LevelsShifted` when the place has data one level off (MapProxy's TMS
    numbers levels from zoom 1: level z-1 is zoom z): one or two extra tile requests.
    """
    lat, lon = place
    for offset in (-1, 1):
        shifted = XYZSource(config.model_copy(update={"zoom_offset": offset}), ctx)
        tile = tile_for_lonlat(shifted.tms, zoom, lon, lat)
        try:
            image = await shifted.fetch_tile(tile)
        except (se.SourceNotFound, se.SourceBadResponse):
            continue
        if image is None:
            continue
        size = (shifted.tms.matrix(zoom).tileWidth, shifted.tms.matrix(zoom).tileHeight)
        pixel = point_in_tile(shifted.tms, tile, lon, lat, size)
        if await ctx.run(data_at, image.data, ctx.max_image_pixels, size, pixel):
            level = "z - 1" if offset < 0 else "z + 1"
            raise LevelsShifted(
                f"no data at level {zoom} here, but level {zoom + offset} has this place's "
                f"data: the server numbers its levels as {level} of the zoom",
                hint=f"set zoom_offset: {offset} (MapProxy's TMS levels are zoom_offset -1)",
                zoom_offset=offset,
            )


async def explain_missing_zoom(
    source: TileSource,
    ctx: UpstreamContext,
    place: tuple[float, float],
    zoom: int,
    refused: str | None = None,
) -> None:
    """Raise what a coarser zoom tells: data there (the resolution is too fine), or data
    only elsewhere in its tile (this place is outside the layer). Return when no zoom has any.
    """
    found = await deepest_zoom_with_data(source, ctx, *place, zoom - 1)
    if found is None:
        return
    deepest, here = found
    if not here:
        raise NoData(
            f"no data at this location: the layer has data at zoom {deepest} nearby, "
            "but not at this lat/lon",
            hint="choose a lat/lon inside the layer's extent",
        )
    res = matrix_ground_resolution(source, deepest, place[0])
    why = f"the upstream refused zoom {zoom} ({refused})" if refused else f"no data at zoom {zoom}"
    raise ResolutionNotSupported(
        f"{why} here; the deepest zoom with data is {deepest}",
        hint=f"resolution not supported, try {res:.2f} m/px",
        deepest_zoom=deepest,
        suggested_resolution=round(res, 3),
    )


async def deepest_zoom_with_data(
    source: TileSource,
    ctx: UpstreamContext,
    lat: float,
    lon: float,
    start: int,
    max_probes: int = 12,
) -> tuple[int, bool] | None:
    """Walk from ``start`` towards coarser zooms to the first whose tile at lat/lon has
    data: that zoom, and whether the data covers lat/lon itself (not only its tile).
    """
    stop = max(source.min_zoom, start - max_probes + 1)
    for zoom in range(start, stop - 1, -1):
        tile = tile_for_lonlat(source.tms, zoom, lon, lat)  # in the set's own datum
        try:
            image = await source.fetch_tile(tile)
        except (se.SourceNotFound, se.SourceBadResponse):  # 404, or 400 "Invalid level"
            continue
        if image is None:
            continue
        matrix = source.tms.matrix(zoom)
        size = (matrix.tileWidth, matrix.tileHeight)
        pixel = point_in_tile(source.tms, tile, lon, lat, size)
        here = await ctx.run(data_at, image.data, ctx.max_image_pixels, size, pixel)
        if here is not None:
            return zoom, here
    return None


def point_in_tile(
    tms: TileMatrixSet, tile: TileIndex, lon: float, lat: float, size: tuple[int, int]
) -> tuple[int, int]:
    """(col, row) of the WGS84 point in ``tile``'s pixels (in the set's own datum)."""
    x, y = Transformer.from_crs(4326, tms.rasterio_crs, always_xy=True).transform(lon, lat)
    col, row = ~tile_transform(tms, tile) @ (x, y)  # honours the corner of origin
    return min(max(int(col), 0), size[0] - 1), min(max(int(row), 0), size[1] - 1)


def data_at(
    data: bytes, max_pixels: int, size: tuple[int, int], pixel: tuple[int, int]
) -> bool | None:
    """None for a tile without data; else whether the pixels around ``pixel`` hold data.

    Around the point: some opaque pixel, in a window that is not one flat pure white or
    black (how servers fill outside their extent when they cannot be transparent).
    """
    rgba = decode_rgba(data, max_pixels=max_pixels, expect=size)
    if is_blank(rgba):
        return None
    col, row = pixel
    window = rgba[:, max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
    if not window[3].any():
        return False
    flat = bool((window[:3] == window[:3, :1, :1]).all())
    return not (flat and int(window[0, 0, 0]) in (0, 255))


def matrix_ground_resolution(source: TileSource, zoom: int, lat: float) -> float:
    """Ground m/px of a matrix at ``lat`` (Mercator and degrees shrink with cos(lat))."""
    cell = float(source.tms.matrix(zoom).cellSize)
    crs = source.tms.rasterio_crs
    if crs.is_geographic:
        return cell * METRES_PER_DEGREE * math.cos(math.radians(lat))
    if is_web_mercator(crs):
        return cell * math.cos(math.radians(lat))
    return cell
