"""Test connection: fetch a preview at a place and resolution, and explain what went wrong.

A use case of the service, not an adapter: :func:`probe_server` is the one entry point of
the HTTP handler and of ``imagery-proxy servers test``. The preview is read through the
same streaming path as any read; every upstream request is recorded (secrets redacted)
and each failure becomes a finding with a hint.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import attrs
from morecantile import TileMatrixSet
from pydantic import ValidationError
from pyproj import Transformer

from proxy.catalog.base import ServerRecord
from proxy.errors import (
    InvalidInput,
    LevelsShifted,
    NoData,
    ResolutionNotSupported,
    hint_for,
)
from proxy.findings import Finding
from proxy.metrics import SERVER, UNSAVED
from proxy.net.client import REQUEST_LOG, RequestRecord
from proxy.schemas import ENCODED_PLACEHOLDER, LatLon, ServerConfig, XYZConfig
from proxy.services import Services
from proxy.upstream.base import UpstreamContext
from proxy.upstream.detect import normalize
from proxy.upstream.registry import open_source, parse_config
from proxy.upstream.xyz import XYZSource
from streaming import errors as se
from streaming.codecs import MEDIA_TYPES, choose_format, encode
from streaming.decode import decode_rgba, is_blank
from streaming.grid import is_web_mercator, tile_for_lonlat, tile_transform
from streaming.reader import ReadResult, SourceReader, preview_grid, tile_zoom
from streaming.sources import Source, TileSource
from streaming.types import TileIndex

# Fallback resolution for bbox sources (WMS, ArcGIS export), which have no native zoom.
BBOX_DEFAULT_RESOLUTION = 10.0
METRES_PER_DEGREE = 2 * math.pi * 6378137.0 / 360
MIN_PREVIEW_SIZE, MAX_PREVIEW_SIZE = 16, 2048


@attrs.frozen(kw_only=True)
class ProbeRequest:
    """Where and how to test; what is ``None`` comes from the config or the settings."""

    lat: float | None = None
    lon: float | None = None
    resolution: float | None = None  # m/px; default: the config's, else the finest served
    size: int | None = None  # px; default: the settings' preview_size
    format: str = "png"  # auto, png, jpeg or webp (streaming.codecs.choose_format)


@attrs.define
class ProbeResult:
    """The outcome of a test connection (no place when the config itself is invalid)."""

    lat: float | None = None
    lon: float | None = None
    resolution: float | None = None
    zoom: int | None = None
    image: bytes | None = None  # the encoded preview
    media_type: str | None = None
    findings: list[Finding] = attrs.field(factory=list)
    requests: list[RequestRecord] = attrs.field(factory=list)
    error: se.CodedError | None = None

    def report(self) -> dict[str, Any]:
        """Findings and diagnostics as JSON-ready data."""
        return {
            "findings": [attrs.asdict(f) for f in self.findings],
            "diagnostics": {
                "upstream_requests": len(self.requests),
                "requests": [attrs.asdict(r) for r in self.requests],
            },
        }


def url_findings(raw: dict[str, Any]) -> list[Finding]:
    """Findings about the URL as the user typed it (before validation normalized it)."""
    url = str(raw.get("url", ""))
    findings = [Finding(n.code, n.severity, n.message, n.hint) for n in normalize(raw)[1]]
    if ENCODED_PLACEHOLDER.search(url):
        findings.append(
            Finding(
                "encoded_placeholders",
                "warning",
                "the URL had URL-encoded placeholders (like %7Bz%7D); they were decoded to {z}",
                "paste the template with literal braces: {z}/{x}/{y}",
            )
        )
    if raw.get("type") == "xyz" and "{" not in ENCODED_PLACEHOLDER.sub("{}", url):
        findings.append(
            Finding(
                "no_placeholders",
                "error",
                "the URL has no {z}/{x}/{y} placeholders, so every tile would be the same",
                "an XYZ URL looks like https://server/layer/{z}/{x}/{y}.png",
            )
        )
    return findings


async def probe_server(
    services: Services, server: ServerRecord | dict[str, Any], ask: ProbeRequest
) -> ProbeResult:
    """Test a saved server (its opened source is reused) or an unsaved config.

    Problems of the request (place, size, resolution) raise :class:`InvalidInput`; an
    invalid unsaved config, and every upstream failure, are kept in the result with
    their findings, not raised.
    """
    if isinstance(server, ServerRecord):
        findings: list[Finding] = []
        config = parse_config(server.config)
    else:
        findings = url_findings(server)
        try:
            config = parse_config(server)
        except InvalidInput as exc:
            return ProbeResult(findings=findings, error=exc)
    lat, lon = _place(config, ask)
    size = services.settings.preview_size if ask.size is None else ask.size
    if not MIN_PREVIEW_SIZE <= size <= MAX_PREVIEW_SIZE:
        raise InvalidInput(f"size must be between {MIN_PREVIEW_SIZE} and {MAX_PREVIEW_SIZE} px")
    if ask.resolution is not None and ask.resolution <= 0:
        raise InvalidInput("resolution must be a positive number of m/px")
    result = ProbeResult(lat, lon, ask.resolution, findings=findings)
    token = REQUEST_LOG.set(result.requests)
    # A saved server's upstream requests are counted for it in the metrics.
    label = SERVER.set(server.id if isinstance(server, ServerRecord) else UNSAVED)
    try:
        if isinstance(server, ServerRecord):
            source = await services.sources.get(server)
        else:
            source = await open_source(config, services.upstream)
        # What the capabilities document itself gets wrong (duplicate matrices, limits
        # naming no matrix): worked around, but the user should know.
        result.findings.extend(
            Finding(w.code, "warning", w.message, w.hint) for w in getattr(source, "warnings", ())
        )
        await _preview(source, config, result, services, ask, lat=lat, lon=lon, size=size)
    except se.CodedError as exc:
        result.error = exc
        result.findings.append(finding_for(exc))
    finally:
        SERVER.reset(label)
        REQUEST_LOG.reset(token)
    return result


def _place(config: ServerConfig, ask: ProbeRequest) -> tuple[float, float]:
    """The asked lat/lon, else the config's preview point."""
    if ask.lat is None or ask.lon is None:
        if config.preview is None:
            raise InvalidInput(
                "lat and lon are required", hint="give lat/lon, or a preview point in the config"
            )
        return config.preview.lat, config.preview.lon
    try:
        point = LatLon(lat=ask.lat, lon=ask.lon)
    except ValidationError:
        raise InvalidInput("lat must be within ±85.05 and lon within ±180") from None
    return point.lat, point.lon


async def _preview(
    source: Source,
    config: ServerConfig,
    result: ProbeResult,
    services: Services,
    ask: ProbeRequest,
    *,
    lat: float,
    lon: float,
    size: int,
) -> None:
    """Read the ``size`` px preview at lat/lon into ``result``; raise what went wrong."""
    ctx = services.upstream
    if result.resolution is None:
        result.resolution = default_resolution(config, source, lat)
    reader = SourceReader(source, ctx.executor, services.read_limits)
    output = preview_grid(lat, lon, result.resolution, size)
    try:
        read = await reader.read(output)
    except se.SourceBadResponse as exc:
        # Servers answer 400 ("Invalid level") past their last level: look for data above.
        if not isinstance(source, TileSource):
            raise
        zoom = tile_zoom(source, output)
        await _explain_missing_zoom(source, ctx, (lat, lon), zoom, refused=exc.message)
        raise
    result.zoom = read.zoom
    if isinstance(config, XYZConfig) and config.zoom_offset == 0 and read.zoom is not None:
        if not _has_any_data(read):
            await _detect_shifted_levels(config, ctx, (lat, lon), read.zoom)
    await _check_data(source, read, (lat, lon), ctx, result)
    result.findings.extend(_upsampling(source, lat, result.resolution))
    # The RGB and alpha views of the read's interleaved pixels: encoded without a copy.
    fmt = choose_format(ask.format, read.rgba[3])
    options = services.settings.encode_options
    result.image = await ctx.run(partial(encode, read.rgba[:3], read.rgba[3], fmt, **options))
    result.media_type = MEDIA_TYPES[fmt]


async def _check_data(
    source: object,
    read: ReadResult,
    place: tuple[float, float],
    ctx: UpstreamContext,
    result: ProbeResult,
) -> None:
    """Raise when the preview holds no data, saying at which coarser zoom data exists."""
    if read.requests == 0:
        raise NoData(
            "this place is outside the source's tile matrix set",
            hint="choose a lat/lon inside the layer's bounds",
        )
    if read.missing + read.blank < read.requests and read.rgba[3].any():
        if read.missing or read.blank:
            result.findings.append(
                Finding(
                    "partial_data",
                    "info",
                    f"{read.missing + read.blank} of {read.requests} upstream requests had no data",
                )
            )
        return
    if isinstance(source, TileSource) and read.zoom is not None:
        await _explain_missing_zoom(source, ctx, place, read.zoom)
    raise NoData(
        "the upstream returned no data (missing, empty or blank images) at this place",
        hint="check the location (lat/lon) and that the layer covers it",
    )


def _has_any_data(read: ReadResult) -> bool:
    return read.missing + read.blank < read.requests and bool(read.rgba[3].any())


async def _detect_shifted_levels(
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
        if await ctx.run(_data_at, image.data, ctx.max_image_pixels, size, pixel):
            level = "z - 1" if offset < 0 else "z + 1"
            raise LevelsShifted(
                f"no data at level {zoom} here, but level {zoom + offset} has this place's "
                f"data: the server numbers its levels as {level} of the zoom",
                hint=f"set zoom_offset: {offset} (MapProxy's TMS levels are zoom_offset -1)",
                zoom_offset=offset,
            )


async def _explain_missing_zoom(
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


def _upsampling(source: object, lat: float, resolution: float) -> list[Finding]:
    """A warning when the asked resolution is finer than the finest the source serves."""
    if not isinstance(source, TileSource):
        return []
    finest = matrix_ground_resolution(source, source.max_zoom, lat)
    if resolution >= finest * 0.99:
        return []
    return [
        Finding(
            "finer_than_source",
            "warning",
            f"{resolution:g} m/px is finer than the source's finest zoom "
            f"({source.max_zoom}, {finest:.2f} m/px here): the preview is upsampled",
            f"import at {finest:.2f} m/px or coarser; finer pixels add no detail",
        )
    ]


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
        here = await ctx.run(_data_at, image.data, ctx.max_image_pixels, size, pixel)
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


def _data_at(
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


def default_resolution(config: ServerConfig, source: object, lat: float) -> float:
    """The config's resolution, else the finest the source serves at ``lat``."""
    if config.resolution is not None:
        return config.resolution
    if isinstance(source, TileSource):
        return matrix_ground_resolution(source, source.max_zoom, lat)
    return BBOX_DEFAULT_RESOLUTION


def finding_for(exc: se.CodedError) -> Finding:
    """The finding for a failed test connection: the error's own hint, else its type's."""
    return Finding(exc.code, "error", exc.message, hint_for(exc))
