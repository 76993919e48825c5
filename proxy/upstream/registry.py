"""The server types: for each, its config schema, how to open its source and describe it.

:data:`SOURCE_TYPES` is the one list of types; validation, the CLI's choices and the
dispatch to adapters all read it, so a new type is one adapter module plus one row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs
from pydantic import ValidationError

from proxy.errors import InvalidInput
from proxy.schemas import (
    ArcGISConfig,
    ServerBase,
    ServerConfig,
    WMSConfig,
    WMTSConfig,
    XYZConfig,
    refuse_control_chars,
)
from proxy.upstream.arcgis import describe_arcgis, open_arcgis
from proxy.upstream.base import UpstreamContext
from proxy.upstream.detect import normalize
from proxy.upstream.wms import describe_wms, open_wms
from proxy.upstream.wmts import describe_wmts, open_wmts
from proxy.upstream.xyz import XYZSource
from streaming.sources import Source

C = TypeVar("C", bound=ServerBase)


@attrs.frozen
class SourceType(Generic[C]):
    """One server type: the schema of its config, and the adapter's two entry points."""

    schema: type[C]
    # Build the source; WMS, WMTS and ArcGIS read their capabilities first.
    open: Callable[[C, UpstreamContext], Awaitable[Source]]
    # What the upstream offers (layers, styles, formats, CRSs, grids), for a user to choose.
    describe: Callable[[C, UpstreamContext], Awaitable[dict[str, Any]]]


async def open_xyz(config: XYZConfig, ctx: UpstreamContext) -> Source:
    """An XYZ source: nothing to read first."""
    return XYZSource(config, ctx)


async def describe_xyz(config: XYZConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """An XYZ server offers what its config says."""
    return {
        "type": "xyz",
        "tile_matrix_set": "WebMercatorQuad",
        "tile_size": config.tile_size,
        "min_zoom": config.min_zoom,
        "max_zoom": config.max_zoom,
    }


SOURCE_TYPES: dict[str, SourceType[Any]] = {
    "xyz": SourceType(XYZConfig, open_xyz, describe_xyz),
    "wms": SourceType(WMSConfig, open_wms, describe_wms),
    "wmts": SourceType(WMTSConfig, open_wmts, describe_wmts),
    "arcgis": SourceType(ArcGISConfig, open_arcgis, describe_arcgis),
}
SERVER_TYPES = tuple(SOURCE_TYPES)


def parse_config(data: Any) -> ServerConfig:
    """Validate a server config; every problem becomes one :class:`InvalidInput`."""
    if not isinstance(data, dict):
        raise InvalidInput("a server config must be a JSON object")
    try:  # before normalizing, which would percent-encode a line break into the URL
        refuse_control_chars(data)
    except ValueError as exc:
        message = "must not hold control characters (line breaks, tabs, NUL)"
        raise InvalidInput(
            f"invalid server config: {exc}", errors=[{"field": "url", "message": message}]
        ) from None
    data = normalize(data)[0]  # pasted URL forms: an ArcGIS export URL picked as wms, ...
    name = data.get("type")
    kind = SOURCE_TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidInput(
            f"unknown server type {name!r}",
            hint=f"type must be one of {', '.join(SERVER_TYPES)}",
        )
    try:
        config: ServerConfig = kind.schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            "invalid server config: " + _describe(exc), errors=_details(exc)
        ) from None
    except ValueError as exc:  # raised by model_post_init
        raise InvalidInput(f"invalid server config: {exc}") from None
    return config


async def open_source(config: ServerConfig, ctx: UpstreamContext) -> Source:
    """The source for ``config`` (not cached: see :class:`proxy.cache.sources.OpenSources`)."""
    return await SOURCE_TYPES[config.type].open(config, ctx)


async def describe(config: ServerConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """What the upstream of ``config`` offers."""
    return await SOURCE_TYPES[config.type].describe(config, ctx)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors())


def _details(exc: ValidationError) -> list[dict[str, str]]:
    # Never echo the input back: it may hold a credential.
    return [{"field": _loc(e["loc"]), "message": e["msg"]} for e in exc.errors()]


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "config"
