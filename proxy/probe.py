"""Test connection: fetch a preview at a place and resolution, and explain what went wrong.

A use case of the service, not an adapter: :func:`probe_server` is the one entry point of
the HTTP handler and of ``imagery-proxy servers test``. The preview is read through the
same streaming path as any read; every upstream request is recorded (secrets redacted)
and each failure becomes a finding with a hint.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
from pydantic import ValidationError

from proxy.catalog.base import ServerRecord
from proxy.errors import (
    InvalidInput,
    hint_for,
)
from proxy.findings import Finding
from proxy.metrics import SERVER, UNSAVED
from proxy.net.client import REQUEST_LOG, RequestRecord
from proxy.no_data import check_data, explain_missing_zoom, matrix_ground_resolution
from proxy.quota.enforce import PROBING
from proxy.schemas import ENCODED_PLACEHOLDER, LatLon, ServerConfig
from proxy.services import Services
from proxy.upstream.detect import normalize
from proxy.upstream.registry import open_source, parse_config
from streaming import errors as se
from streaming.codecs import MEDIA_TYPES, choose_format, encode
from streaming.plan import tile_zoom
from streaming.reader import SourceReader, preview_grid
from streaming.sources import Source, TileSource

# Fallback resolution for bbox sources (WMS, ArcGIS export), which have no native zoom.
BBOX_DEFAULT_RESOLUTION = 10.0
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
    probing = PROBING.set(True)  # a spent quota still leaves its reserve to a test
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
        PROBING.reset(probing)
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
        await explain_missing_zoom(source, ctx, (lat, lon), zoom, refused=exc.message)
        raise
    result.zoom = read.zoom
    result.findings.extend(await check_data(source, config, read, (lat, lon), ctx))
    result.findings.extend(_upsampling(source, lat, result.resolution))
    # The RGB and alpha views of the read's interleaved pixels: encoded without a copy.
    fmt = choose_format(ask.format, read.rgba[3])
    options = services.settings.encode_options
    result.image = await ctx.run(partial(encode, read.rgba[:3], read.rgba[3], fmt, **options))
    result.media_type = MEDIA_TYPES[fmt]


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
