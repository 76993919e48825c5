"""What an import would make, answered before anything starts (SPEC §4 "confirm import").

The grid (CRS, transform, size) comes from ``streaming.image.plan_grid`` over the AOIs;
the cost of a full read from the image's own estimate (no upstream request: the zoom
and the tiles follow from the grid); the cells are those a download would make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from proxy.catalog.base import ServerRecord
from proxy.errors import InvalidInput
from proxy.images.ask import parse_crs
from proxy.images.errors import InvalidAOI
from proxy.images.store import crs_text
from proxy.upstream.arcgis_service import wkid
from proxy.upstream.crs import crs_from_wkid
from proxy.upstream.wms import read_capabilities
from streaming.aoi import AOIError, AOIs, check_inside, parse_aois
from streaming.image import (
    ImageGrid,
    StreamingImage,
    cells,
    plan_grid,
    resolve_crs,
)


def aois_of(geojson: Any) -> AOIs:
    """The AOIs of a GeoJSON geometry, Feature or FeatureCollection, else :class:`InvalidAOI`."""
    try:
        return parse_aois(geojson)
    except AOIError as exc:
        raise InvalidAOI(
            f"invalid aois: {getattr(exc, 'message', None) or exc}",
            hint=getattr(exc, "hint", None)
            or "send RFC 7946 GeoJSON polygons in lon/lat order (not lat/lon)",
        ) from None


WORLD = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)  # Web Mercator's reach


async def server_bounds(source: Any) -> tuple[float, float, float, float]:
    """WGS84 (west, south, east, north) of a source's data, as its server declares it.

    A WMS layer's bbox (union of the layers read), a WMTS layer's WGS84BoundingBox, an
    ArcGIS service's extent; XYZ (and anything declaring nothing): Web Mercator's world.
    Read from the capabilities and service info the source was opened with (cached).
    """
    plan = getattr(source, "plan", None)  # WMTS (through CachedTileSource's delegation)
    found = getattr(getattr(plan, "layer", None), "wgs84_bounds", None)
    if found:
        return _floats(found)
    connection: Any = getattr(source, "connection", None)
    settings: Any = getattr(source, "settings", None)
    if connection is not None and hasattr(settings, "layers"):  # WMS
        caps, _ = await read_capabilities(connection.config, connection)
        boxes = [
            layer.wgs84_bounds
            for name in settings.layers
            if (layer := caps.layer(name)) is not None and layer.wgs84_bounds is not None
        ]
        if boxes:
            return _union(boxes)
    session = getattr(source, "session", None)
    if session is not None:  # ArcGIS, tiled or export
        info = await session.service_info()
        extent = info.get("fullExtent") or info.get("extent") or {}
        crs = crs_from_wkid(wkid(extent.get("spatialReference") or {}))
        corners = [extent.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        if crs is not None and all(isinstance(v, int | float) for v in corners):
            return _floats(transform_bounds(crs, "EPSG:4326", *corners, densify_pts=21))
    return WORLD


def check_aois_inside(aois: AOIs, bounds: tuple[float, float, float, float]) -> None:
    """Refuse AOIs outside the server's ``bounds`` (:class:`InvalidAOI`, lat/lon swap hinted)."""
    try:
        check_inside(aois, bounds, "the server")
    except AOIError as exc:
        raise InvalidAOI(str(getattr(exc, "message", None) or exc), hint=exc.hint) from None


def _floats(values: Any) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in values)
    return west, south, east, north


def _union(boxes: list[Any]) -> tuple[float, float, float, float]:
    return (
        min(float(b[0]) for b in boxes),
        min(float(b[1]) for b in boxes),
        max(float(b[2]) for b in boxes),
        max(float(b[3]) for b in boxes),
    )


def crs_for(value: str | None, aois: AOIs) -> CRS:
    """The image CRS: EPSG:3857 by default, any CRS PROJ knows, or ``utm``."""
    if value is None:
        value = "EPSG:3857"
    if value.strip().lower() != "utm":
        parse_crs(value)  # an unknown CRS is a 400 unknown_crs, whatever the library says
    crs: CRS = resolve_crs(value, aois)
    return crs


def server_resolution(server: ServerRecord, resolution: float | None) -> float:
    """The import resolution: the asked one, else the server's."""
    if resolution is not None:
        return resolution
    value = server.config.get("resolution")
    if not isinstance(value, int | float) or value <= 0:
        raise InvalidInput(
            "the server has no default resolution: give resolution (m/px)",
            hint='or set one on the server: PATCH /servers/{id} {"resolution": ...}',
        )
    return float(value)


@attrs.frozen
class Planned:
    """An import's grid and AOIs, and the plan answer."""

    grid: ImageGrid
    aois: AOIs
    answer: dict[str, Any]


def plan_answer(
    image: StreamingImage, grid: ImageGrid, aois: AOIs, resolution: float, max_cell_pixels: int
) -> dict[str, Any]:
    """The plan of ``image``: its grid, a full read's cost, and the download cells."""
    # The whole grid, not image.window(): an image may be larger than one read's budget.
    estimate = image.estimate(grid.as_grid())
    parts = cells(grid, aois, max_cell_pixels)
    return {
        "crs": crs_text(grid.crs),
        "transform": [float(v) for v in tuple(grid.transform)[:6]],
        "width": int(grid.width),
        "height": int(grid.height),
        "pixels": int(grid.width) * int(grid.height),
        "resolution": resolution,
        "zoom": estimate.zoom,
        "ground_resolution": estimate.ground_resolution,
        "requests": int(estimate.requests),
        "bytes": int(estimate.bytes),
        "aois": aois.to_geojson(),
        "cells": {
            "max_cell_pixels": max_cell_pixels,
            "count": len(parts),
            "items": [_json_ready(cell) for cell in parts],
        },
    }


def plan_grid_for(aois: AOIs, resolution: float, crs: CRS) -> ImageGrid:
    """The image grid over ``aois`` (the union of their bounds, snapped to the pixel grid)."""
    return plan_grid(aois, resolution, crs)


def _json_ready(value: Any) -> Any:
    """A cell (attrs, dataclass or NamedTuple of numbers) as JSON-ready data."""
    if attrs.has(type(value)):
        return _json_ready(attrs.asdict(value, recurse=False))
    if hasattr(value, "_asdict"):
        return _json_ready(value._asdict())
    if hasattr(value, "__dataclass_fields__"):
        return {k: _json_ready(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if hasattr(value, "__geo_interface__"):
        return value.__geo_interface__
    return str(value)
