"""Test connection: fetch a preview at a place and resolution, and explain what went wrong.

The preview is read through the same streaming path as any read; every upstream request
is recorded (secrets redacted) and each failure becomes a finding with a hint.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from proxy.errors import NoData, ResolutionNotSupported
from proxy.net.client import REQUEST_LOG, RequestRecord
from proxy.schemas import ENCODED_PLACEHOLDER, ServerConfig
from proxy.upstream.base import UpstreamContext
from proxy.upstream.sources import open_source
from streaming import errors as se
from streaming.decode import decode_rgba, is_blank
from streaming.encode import encode_png
from streaming.reader import ReadLimits, ReadResult, SourceReader, preview_grid
from streaming.sources import TileSource
from streaming.types import TileIndex

# Fallback resolution for bbox sources (WMS, ArcGIS export), which have no native zoom.
BBOX_DEFAULT_RESOLUTION = 10.0
METRES_PER_DEGREE = 2 * math.pi * 6378137.0 / 360


@attrs.frozen
class Finding:
    """Something the probe noticed, with what to do about it."""

    code: str
    severity: str  # "error", "warning" or "info"
    message: str
    hint: str | None = None


@attrs.define
class ProbeResult:
    """The outcome of a test connection."""

    lat: float
    lon: float
    resolution: float | None = None
    zoom: int | None = None
    png: bytes | None = None
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
    findings = []
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


async def test_connection(
    config: ServerConfig,
    ctx: UpstreamContext,
    *,
    lat: float,
    lon: float,
    resolution: float | None,
    size: int,
    limits: ReadLimits,
) -> ProbeResult:
    """Read a ``size`` px preview at lat/lon; errors are kept in the result, not raised."""
    result = ProbeResult(lat, lon, resolution)
    token = REQUEST_LOG.set(result.requests)
    try:
        source = await open_source(config, ctx)
        if result.resolution is None:
            result.resolution = default_resolution(config, source, lat)
        reader = SourceReader(source, ctx.executor, limits)
        read = await reader.read(preview_grid(lat, lon, result.resolution, size))
        result.zoom = read.zoom
        await _check_data(source, read, result, ctx)
        result.findings.extend(_upsampling(source, result))
        result.png = await ctx.run(encode_png, read.rgba)
    except se.CodedError as exc:
        result.error = exc
        result.findings.append(finding_for(exc))
    finally:
        REQUEST_LOG.reset(token)
    return result


async def _check_data(
    source: object, read: ReadResult, result: ProbeResult, ctx: UpstreamContext
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
        deepest = await deepest_zoom_with_data(source, ctx, result.lat, result.lon, read.zoom - 1)
        if deepest is not None:
            res = matrix_ground_resolution(source, deepest, result.lat)
            raise ResolutionNotSupported(
                f"no data at zoom {read.zoom} here; the deepest zoom with data is {deepest}",
                hint=f"resolution not supported, try {res:.2f} m/px",
                deepest_zoom=deepest,
                suggested_resolution=round(res, 3),
            )
    raise NoData(
        "the upstream returned no data (missing, empty or blank images) at this place",
        hint="check the location (lat/lon) and that the layer covers it",
    )


def _upsampling(source: object, result: ProbeResult) -> list[Finding]:
    """A warning when the asked resolution is finer than the finest the source serves."""
    if not isinstance(source, TileSource) or result.resolution is None:
        return []
    finest = matrix_ground_resolution(source, source.max_zoom, result.lat)
    if result.resolution >= finest * 0.99:
        return []
    return [
        Finding(
            "finer_than_source",
            "warning",
            f"{result.resolution:g} m/px is finer than the source's finest zoom "
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
) -> int | None:
    """Walk from ``start`` towards coarser zooms; the first whose tile at lat/lon has data."""
    stop = max(source.min_zoom, start - max_probes + 1)
    for zoom in range(start, stop - 1, -1):
        tile = TileIndex(*source.tms.tile(lon, lat, zoom))
        try:
            image = await source.fetch_tile(tile)
        except se.SourceNotFound:
            continue
        if image is not None and await ctx.run(_has_data, image.data, ctx.max_image_pixels):
            return zoom
    return None


def _has_data(data: bytes, max_pixels: int) -> bool:
    return not is_blank(decode_rgba(data, max_pixels=max_pixels))


def matrix_ground_resolution(source: TileSource, zoom: int, lat: float) -> float:
    """Ground m/px of a matrix at ``lat`` (Mercator and degrees shrink with cos(lat))."""
    cell = float(source.tms.matrix(zoom).cellSize)
    crs = source.tms.rasterio_crs
    if crs.is_geographic:
        return cell * METRES_PER_DEGREE * math.cos(math.radians(lat))
    if crs.to_epsg() in (3857, 900913, 102100):
        return cell * math.cos(math.radians(lat))
    return cell


def default_resolution(config: ServerConfig, source: object, lat: float) -> float:
    """The config's resolution, else the finest the source serves at ``lat``."""
    if config.resolution is not None:
        return config.resolution
    if isinstance(source, TileSource):
        return matrix_ground_resolution(source, source.max_zoom, lat)
    return BBOX_DEFAULT_RESOLUTION


HINTS: dict[type[Exception], str] = {
    se.SourceTLSError: "the TLS certificate could not be verified: enable skip_ssl if you trust "
    "this server",
    se.SourceAuthError: "check the credentials, the headers or the API-key query parameters",
    se.SourceServiceException: "the server refused the request; its message says why",
    se.SourceWrongContentType: "the URL answers something that is not an image: check it points "
    "at tiles or at the service endpoint",
    se.SourceTimeout: "the server is slow or unreachable; try again or check the URL",
    se.SourceUnavailable: "the server is down or unreachable; check the host and port",
}


def finding_for(exc: se.CodedError) -> Finding:
    """The finding for a failed test connection: the error's own hint, else the type's."""
    hint = exc.hint
    for cls in type(exc).__mro__:
        if hint is None and cls in HINTS:
            hint = HINTS[cls]
    return Finding(exc.code, "error", exc.message, hint)
