"""Areas of interest: GeoJSON polygons (RFC 7946, lon/lat) parsed, checked and united.

An AOI is a geometry, a Feature or a FeatureCollection of Polygons and MultiPolygons
(holes allowed). Every problem raises :class:`AOIError` with a message that says what is
wrong and where (``features[2].geometry.coordinates[0]``), so a client can fix it.
Antimeridian-crossing polygons are not split: give them as two polygons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import attrs
import shapely
from geojson_pydantic import MultiPolygon, Polygon
from pydantic import ValidationError
from shapely.geometry import mapping, shape
from shapely.validation import explain_validity

from streaming.errors import AOIError

__all__ = ["AOIError", "AOIs", "check_inside", "parse_aois"]

GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "GeometryCollection")
POLYGON_MODELS: dict[str, type[Polygon] | type[MultiPolygon]] = {
    "Polygon": Polygon,
    "MultiPolygon": MultiPolygon,
}
SWAP_HINT = "GeoJSON positions are [longitude, latitude]: the coordinates look swapped"


@attrs.frozen
class AOIs:
    """The areas of interest of an image, in EPSG:4326 lon/lat.

    ``parts`` are the polygons as given, one per feature or geometry; ``geometry`` is
    their union, always a MultiPolygon.
    """

    geometry: Any  # shapely.MultiPolygon
    parts: tuple[Any, ...]  # shapely.Polygon | shapely.MultiPolygon, one per feature

    def to_geojson(self) -> dict[str, Any]:
        """The parts as a GeoJSON FeatureCollection (one Feature per part)."""
        features = [
            {"type": "Feature", "properties": {"index": i}, "geometry": _plain(mapping(p))}
            for i, p in enumerate(self.parts)
        ]
        return {"type": "FeatureCollection", "features": features}

    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the union, in degrees."""
        west, south, east, north = self.geometry.bounds
        return float(west), float(south), float(east), float(north)

    def centre(self) -> tuple[float, float]:
        """(lon, lat) of the centre of the bounds."""
        west, south, east, north = self.bounds()
        return (west + east) / 2, (south + north) / 2


def parse_aois(data: Any) -> AOIs:
    """Parse a GeoJSON geometry, Feature or FeatureCollection (dict or JSON text) into AOIs.

    Raises :class:`AOIError` for invalid GeoJSON, a geometry that is not a polygon, an
    empty or zero-area polygon, a self-intersecting one, or coordinates outside the
    lon/lat ranges (with a hint when they look like lat/lon swapped).
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise AOIError(f"invalid GeoJSON: not JSON ({exc})") from exc
    parts = [_polygon(geometry, where) for geometry, where in _geometries(data)]
    union = shapely.union_all(parts)
    if isinstance(union, shapely.Polygon):
        union = shapely.MultiPolygon([union])
    return AOIs(union, tuple(parts))


def check_inside(aois: AOIs, bounds: tuple[float, float, float, float], what: str) -> None:
    """Refuse AOIs that do not overlap ``bounds`` (west, south, east, north) of ``what``.

    When the AOIs with their axes swapped would overlap, the hint says so.
    """
    area = shapely.box(*bounds)
    if aois.geometry.intersects(area):
        return
    swapped = shapely.transform(aois.geometry, lambda xy: xy[:, ::-1])
    hint = (
        SWAP_HINT
        if swapped.intersects(area)
        else (f"draw the AOI inside {what}'s bounds {_fmt_bounds(bounds)}")
    )
    raise AOIError(
        f"the AOI {_fmt_bounds(aois.bounds())} lies outside {what}'s bounds {_fmt_bounds(bounds)}",
        hint=hint,
    )


def _geometries(data: Any) -> Iterator[tuple[Any, str]]:
    """(geometry object, where) for every geometry of a GeoJSON object."""
    kind = _kind(data, "the AOI")
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise AOIError('invalid GeoJSON: a FeatureCollection needs a "features" list')
        if not features:
            raise AOIError("the AOI is empty: the FeatureCollection has no features")
        for i, feature in enumerate(features):
            where = f"features[{i}]"
            if _kind(feature, where) != "Feature":
                raise AOIError(f"invalid GeoJSON: {where} is a {feature['type']}, not a Feature")
            yield _feature_geometry(feature, where), f"{where}.geometry"
    elif kind == "Feature":
        yield _feature_geometry(data, "the Feature"), "geometry"
    else:
        yield data, "the geometry"


def _kind(obj: Any, where: str) -> str:
    if not isinstance(obj, dict):
        raise AOIError(f"invalid GeoJSON: {where} is not an object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise AOIError(f'invalid GeoJSON: {where} has no "type"')
    return kind


def _feature_geometry(feature: dict[str, Any], where: str) -> Any:
    geometry = feature.get("geometry")
    if geometry is None:
        raise AOIError(f"the AOI is empty: {where} has no geometry")
    return geometry


def _polygon(geometry: Any, where: str) -> Any:
    """A checked shapely (Multi)Polygon from one GeoJSON geometry."""
    kind = _kind(geometry, where)
    model = POLYGON_MODELS.get(kind)
    if model is None:
        known = kind in GEOMETRY_TYPES
        raise AOIError(
            f"{where} is a {kind}, not a Polygon or MultiPolygon"
            if known
            else f'invalid GeoJSON: {where} has an unknown type "{kind}"',
            hint="an AOI is an area: draw it as a polygon",
        )
    try:
        parsed = model.model_validate(geometry)
    except ValidationError as exc:
        raise AOIError(f"invalid GeoJSON: {_describe(exc, where)}") from exc
    if not parsed.coordinates or not any(parsed.coordinates):
        raise AOIError(f"the AOI is empty: {where} has no coordinates")
    _check_ranges(geometry["coordinates"], where)
    polygon = shape(parsed.model_dump(exclude_none=True))
    polygon = shapely.force_2d(polygon)
    # A bow tie's signed halves cancel: judge the area on the repaired shape.
    repaired = polygon if polygon.is_valid else shapely.make_valid(polygon)
    if polygon.is_empty or repaired.area == 0:
        raise AOIError(f"{where} has zero area", hint="an AOI must enclose an area")
    if not polygon.is_valid:
        reason = explain_validity(polygon)
        raise AOIError(
            f"{where} is not a valid polygon: {reason}",
            hint="a ring must not cross itself or another ring; holes must lie inside",
        )
    return polygon


def _describe(exc: ValidationError, where: str) -> str:
    """The first error of a pydantic validation as 'where.coordinates[0][2]: message'."""
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("Position"):  # pydantic names the union member tried
            path += f".{part}"
    # "features[1].geometry.coordinates[0]", or "coordinates[0] of the geometry"
    path = f"{where}{path}" if " " not in where else f"{path.lstrip('.')} of {where}"
    return f"{path}: {error['msg'].removeprefix('Value error, ')}"


def _positions(coords: Any) -> Iterator[tuple[float, float]]:
    if coords and isinstance(coords[0], int | float):
        yield float(coords[0]), float(coords[1])
    else:
        for item in coords:
            yield from _positions(item)


def _check_ranges(coords: Any, where: str) -> None:
    points = list(_positions(coords))
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in points):
        raise AOIError(f"invalid GeoJSON: {where} has a coordinate that is not a finite number")
    bad = [(x, y) for x, y in points if not (-180 <= x <= 180 and -90 <= y <= 90)]
    if not bad:
        return
    lon, lat = bad[0]
    swapped = all(-90 <= x <= 90 and -180 <= y <= 180 for x, y in points)
    raise AOIError(
        f"{where} has a position [{lon}, {lat}] outside longitude -180..180, latitude -90..90",
        hint=SWAP_HINT if swapped else "give positions in EPSG:4326 degrees, [lon, lat]",
    )


def _fmt_bounds(bounds: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in bounds) + "]"


def _plain(obj: Any) -> Any:
    """shapely's mapping() as plain JSON lists (it returns tuples)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
