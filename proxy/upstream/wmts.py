"""WMTS servers: REST ResourceURL templates and KVP GetTile over any TileMatrixSet.

The capabilities are fetched and screened by :mod:`proxy.upstream.capabilities` and
parsed by :mod:`proxy.upstream.wmts_capabilities`; this module chooses the layer, set,
style, format and encoding of a config, serves its tiles and summarises the
capabilities. :mod:`proxy.upstream.wmts_to_xyz` turns a layer into an xyz config.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import attrs
from morecantile import TileMatrixSet

from proxy.errors import InvalidInput
from proxy.schemas import WMTSConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from proxy.upstream.capabilities import cached_capabilities
from proxy.upstream.wmts_capabilities import (
    Capabilities,
    DocumentWarning,
    Layer,
    Limits,
    MatrixSet,
    document_warnings,
    duplicate_warnings,
    limits_warnings,
    match_limits,
    parse_capabilities,
    quad_zooms,
    tile_matrix_set,
)
from streaming.errors import SourceBadResponse, SourceUnsupported
from streaming.sources import FetchedImage
from streaming.types import TileIndex

CAPABILITIES_PARAMS = {"SERVICE": "WMTS", "REQUEST": "GetCapabilities", "VERSION": "1.0.0"}
TILE_PLACEHOLDERS = {"tilematrix", "tilerow", "tilecol"}
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
PATH_SAFE = ":@!$&'()*+,;=-._~"


@attrs.frozen
class TileEndpoint:
    """How tiles are asked for: a REST template (pre-filled) or a KVP endpoint and params."""

    template: str | None
    kvp_url: str | None
    kvp_params: dict[str, str]

    def request(self, matrix_id: str, row: int, col: int) -> tuple[str, dict[str, str]]:
        """URL and query params of one tile."""
        if self.template is not None:
            values = {"tilematrix": matrix_id, "tilerow": str(row), "tilecol": str(col)}
            return fill_template(self.template, values), {}
        assert self.kvp_url is not None
        params = {"TILEMATRIX": matrix_id, "TILEROW": str(row), "TILECOL": str(col)}
        return self.kvp_url, {**self.kvp_params, **params}


def fill_template(template: str, values: dict[str, str], *, encode: bool = True) -> str:
    """Replace ``{Name}`` placeholders (case-insensitive) found in ``values``; keep the others."""

    def sub(m: re.Match[str]) -> str:
        value = values.get(m.group(1).lower())
        if value is None:
            return m.group(0)
        return quote(value, safe=PATH_SAFE) if encode else value

    return PLACEHOLDER.sub(sub, template)


@attrs.frozen
class SourcePlan:
    """Everything chosen from the capabilities for one config."""

    layer: Layer
    matrix_set: MatrixSet
    tms: TileMatrixSet
    style: str
    format: str
    endpoint: TileEndpoint
    min_zoom: int
    max_zoom: int
    limits: dict[str, Limits]  # by matrix identifier; empty: no limits
    warnings: tuple[DocumentWarning, ...] = ()


def plan_source(caps: Capabilities, config: WMTSConfig, *, quad: bool = False) -> SourcePlan:
    """Choose layer, set, style, format and request encoding (blocking: pyproj, morecantile).

    With ``quad`` only a GoogleMapsCompatible-like set is accepted.
    """
    layer = _pick_layer(caps, config.layer)
    spec = _pick_set(caps, layer, config.tile_matrix_set, quad)
    style = _pick_style(layer, config.style)
    kvp_url = caps.kvp_url or (None if layer.templates else _base_url(config.url))
    rest_only = [f for f, _ in layer.templates] if kvp_url is None else []
    fmt = _pick_format(layer, config.format, rest_only)
    endpoint = _endpoint(layer, spec.identifier, style, fmt, kvp_url)
    if not spec.matrices:
        raise SourceBadResponse(f"tile matrix set {spec.identifier!r} declares no TileMatrix")
    tms = tile_matrix_set(spec)
    declared = layer.links[spec.identifier]
    limits = match_limits(spec, declared)  # none matched: ignored, with a warning
    warnings = (*duplicate_warnings(spec), *limits_warnings(layer.identifier, spec, declared))
    min_zoom, max_zoom = _zoom_range(config, spec, limits)
    return SourcePlan(
        layer, spec, tms, style, fmt, endpoint, min_zoom, max_zoom, limits, tuple(warnings)
    )


def _endpoint(layer: Layer, set_id: str, style: str, fmt: str, kvp_url: str | None) -> TileEndpoint:
    """REST when a ResourceURL offers ``fmt`` (style, set and dimensions filled in), else KVP."""
    values = {"style": style, "tilematrixset": set_id}
    values.update({k.lower(): v for k, v in layer.dimensions.items()})
    template = next((t for f, t in layer.templates if f == fmt), None)
    if template is not None:
        template = fill_template(template, values)
        unknown = {p for p in PLACEHOLDER.findall(template) if p.lower() not in TILE_PLACEHOLDERS}
        if unknown:
            raise SourceUnsupported(
                f"the ResourceURL template of layer {layer.identifier!r} has placeholders the "
                f"capabilities give no value for: {sorted(unknown)}"
            )
    kvp_params = {
        "SERVICE": "WMTS",
        "REQUEST": "GetTile",
        "VERSION": "1.0.0",
        "LAYER": layer.identifier,
        "STYLE": style,
        "FORMAT": fmt,
        "TILEMATRIXSET": set_id,
        **layer.dimensions,
    }
    return TileEndpoint(template, kvp_url, kvp_params)


def _names(values: Any, limit: int = 20) -> str:
    names = [str(v) for v in values]
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pick_layer(caps: Capabilities, wanted: str | None) -> Layer:
    if not caps.layers:
        raise InvalidInput("the WMTS capabilities declare no layer")
    if wanted is None:
        return next(iter(caps.layers.values()))
    if wanted not in caps.layers:
        raise InvalidInput(
            f"the WMTS has no layer {wanted!r}",
            hint=f"available layers: {_names(caps.layers)}",
        )
    return caps.layers[wanted]


def _pick_set(caps: Capabilities, layer: Layer, wanted: str | None, quad: bool) -> MatrixSet:
    linked = [caps.matrix_sets[s] for s in layer.links if s in caps.matrix_sets]
    if wanted is not None:
        if wanted not in layer.links or wanted not in caps.matrix_sets:
            raise InvalidInput(
                f"layer {layer.identifier!r} has no tile matrix set {wanted!r}",
                hint=f"its tile matrix sets: {_names(layer.links)}",
            )
        spec = caps.matrix_sets[wanted]
        if quad and quad_zooms(spec) is None:
            raise SourceUnsupported(
                f"tile matrix set {wanted!r} is not a Web Mercator quad (GoogleMapsCompatible)",
                hint="only such a set can become an XYZ template; use the wmts server type",
            )
        return spec
    if not linked:
        raise InvalidInput(f"layer {layer.identifier!r} links no declared tile matrix set")
    mercator = next((s for s in linked if quad_zooms(s) is not None), None)
    if quad and mercator is None:
        raise SourceUnsupported(
            f"layer {layer.identifier!r} has no Web Mercator quad (GoogleMapsCompatible) tile "
            f"matrix set; its sets: {_names(layer.links)}",
            hint="use the wmts server type, which reads any tile matrix set",
        )
    return mercator or linked[0]


def _pick_style(layer: Layer, wanted: str | None) -> str:
    if wanted is None:
        return layer.default_style or "default"
    if layer.styles and wanted not in layer.styles:
        raise InvalidInput(
            f"layer {layer.identifier!r} has no style {wanted!r}",
            hint=f"its styles: {_names(layer.styles)}",
        )
    return wanted


def _pick_format(layer: Layer, wanted: str | None, only: list[str]) -> str:
    offered = only or list(dict.fromkeys([*layer.formats, *(f for f, _ in layer.templates)]))
    if wanted is not None:
        if offered and wanted not in offered:
            raise InvalidInput(
                f"layer {layer.identifier!r} is not offered as {wanted!r}",
                hint=f"its formats: {_names(offered)}",
            )
        return wanted
    for preferred in ("image/png", "image/jpeg"):
        if preferred in offered:
            return preferred
    return offered[0] if offered else "image/png"


def _zoom_range(config: WMTSConfig, spec: MatrixSet, limits: dict[str, Limits]) -> tuple[int, int]:
    last = len(spec.matrices) - 1
    listed = [i for i, mid in enumerate(spec.matrix_ids) if mid in limits] or [0, last]
    lo = listed[0] if config.min_zoom is None else config.min_zoom
    hi = listed[-1] if config.max_zoom is None else config.max_zoom
    if not 0 <= lo <= hi <= last:
        raise InvalidInput(
            f"zoom range {lo}..{hi} is outside tile matrix set {spec.identifier!r} "
            f"(matrices 0..{last}, coarse to fine)"
        )
    return lo, hi


def _base_url(url: str) -> str:
    """``url`` without its query: the KVP endpoint when the capabilities name none."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def capabilities_params(url: str) -> dict[str, str]:
    """GetCapabilities params to add to ``url`` (none for a REST ``...Capabilities.xml``)."""
    parts = urlsplit(url)
    present = {k.lower() for k, _ in parse_qsl(parts.query)}
    if parts.path.lower().endswith(".xml") or "request" in present:
        return {}
    return {k: v for k, v in CAPABILITIES_PARAMS.items() if k.lower() not in present}


async def load_capabilities(connection: ServerConnection) -> Capabilities:
    """Fetch (cached), screen and parse the capabilities of the connection's server."""
    url = connection.config.url
    return await cached_capabilities(connection, url, capabilities_params(url), parse_capabilities)


class WMTSSource:
    """A :class:`streaming.sources.TileSource` over one WMTS layer and tile matrix set."""

    def __init__(self, connection: ServerConnection, plan: SourcePlan) -> None:
        self.connection = connection
        self.plan = plan
        self._limits = plan.limits

    @property
    def tms(self) -> TileMatrixSet:
        """The WMTS set as morecantile, ids "0".."n-1" coarse to fine."""
        return self.plan.tms

    @property
    def warnings(self) -> tuple[DocumentWarning, ...]:
        """Mistakes of the capabilities that affect this source (for test connection)."""
        return self.plan.warnings

    @property
    def min_zoom(self) -> int:
        """Coarsest matrix index served."""
        return self.plan.min_zoom

    @property
    def max_zoom(self) -> int:
        """Finest matrix index served."""
        return self.plan.max_zoom

    def request_for(self, tile: TileIndex) -> tuple[str, dict[str, str]] | None:
        """URL and params of ``tile``; ``None`` outside the matrix, zoom range or limits."""
        if not self.min_zoom <= tile.z <= self.max_zoom:
            return None
        matrix = self.plan.matrix_set.matrices[tile.z]
        if not (0 <= tile.x < matrix.matrix_width and 0 <= tile.y < matrix.matrix_height):
            return None
        if self._limits:
            limits = self._limits.get(matrix.identifier)
            if limits is None or not limits.contains(tile.x, tile.y):
                return None
        return self.plan.endpoint.request(matrix.identifier, tile.y, tile.x)

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """Fetch one tile; where the capabilities say there is none, none is asked for."""
        request = self.request_for(tile)
        if request is None:
            return None
        return await self.connection.get_image(*request)


async def open_wmts(config: WMTSConfig, ctx: UpstreamContext) -> WMTSSource:
    """Read the capabilities and open the configured layer and tile matrix set."""
    connection = ServerConnection(config, ctx)
    caps = await load_capabilities(connection)
    plan: SourcePlan = await ctx.run(plan_source, caps, config)
    return WMTSSource(connection, plan)


async def describe_wmts(config: WMTSConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """A summary of the capabilities: layers, styles, formats, tile matrix sets, bounds."""
    caps = await load_capabilities(ServerConnection(config, ctx))
    sets: list[dict[str, Any]] = await ctx.run(_describe_sets, caps)
    layers = [
        {
            "id": layer.identifier,
            "title": layer.title,
            "styles": list(layer.styles),
            "default_style": layer.default_style,
            "formats": list(dict.fromkeys([*layer.formats, *(f for f, _ in layer.templates)])),
            "tile_matrix_sets": list(layer.links),
            "encodings": (["rest"] if layer.templates else []) + (["kvp"] if caps.kvp_url else []),
            "dimensions": dict(layer.dimensions),
            "bounds": list(layer.wgs84_bounds) if layer.wgs84_bounds else None,
        }
        for layer in caps.layers.values()
    ]
    warnings = [attrs.asdict(w) for w in await ctx.run(document_warnings, caps)]
    return {"layers": layers, "tile_matrix_sets": sets, "warnings": warnings}


def _describe_sets(caps: Capabilities) -> list[dict[str, Any]]:
    return [
        {
            "id": spec.identifier,
            "crs": spec.crs,
            "matrices": len(spec.matrices),
            "tile_size": [spec.matrices[0].tile_width, spec.matrices[0].tile_height]
            if spec.matrices
            else None,
            "web_mercator_quad": quad_zooms(spec) is not None,
        }
        for spec in caps.matrix_sets.values()
    ]
