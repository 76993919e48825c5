"""WMTS capabilities as plain values, and WMTS TileMatrixSets as morecantile sets.

OWSLib parses the screened bytes (never fetching anything itself). Each WMTS
TileMatrixSet becomes a morecantile set whose matrix ids are "0".."n-1", coarse to
fine, as :class:`streaming.sources.TileSource` wants; the WMTS identifiers stay in
:attr:`MatrixSet.matrix_ids` to build the requests. ``cellSize`` is
``ScaleDenominator * 0.28 mm / metersPerUnit`` and ``pointOfOrigin`` is the
TopLeftCorner in the CRS's own axis order (lat,lon for EPSG:4326).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import attrs
import pyproj
from morecantile import TileMatrixSet
from owslib.wmts import WebMapTileService
from pyproj.exceptions import CRSError

from proxy.errors import Unsupported
from streaming.grid import EARTH_CIRCUMFERENCE, MERCATOR_HALF_EXTENT

OGC_PIXEL_SIZE = 0.00028  # metres: the standardized rendering pixel of ScaleDenominator
WEB_MERCATOR_CODES = {3857, 900913, 3785, 102100, 102113}
EPSG_TAIL = re.compile(r"EPSG\W.*?(\d+)$", re.I)


@attrs.frozen
class Matrix:
    """One WMTS TileMatrix, as declared (TopLeftCorner in CRS axis order)."""

    identifier: str
    scale_denominator: float
    top_left: tuple[float, float]
    tile_width: int
    tile_height: int
    matrix_width: int
    matrix_height: int


@attrs.frozen
class MatrixSet:
    """One WMTS TileMatrixSet, matrices sorted coarse to fine."""

    identifier: str
    crs: str
    matrices: tuple[Matrix, ...]

    @property
    def matrix_ids(self) -> tuple[str, ...]:
        """WMTS TileMatrix identifier of each zoom index."""
        return tuple(m.identifier for m in self.matrices)


@attrs.frozen
class Limits:
    """TileMatrixLimits: the rows and columns of a matrix that hold tiles."""

    min_row: int
    max_row: int
    min_col: int
    max_col: int

    def contains(self, col: int, row: int) -> bool:
        """True when (col, row) is within the limits."""
        return self.min_row <= row <= self.max_row and self.min_col <= col <= self.max_col


@attrs.frozen
class Layer:
    """A WMTS layer: styles, formats, linked sets (with their limits), REST templates."""

    identifier: str
    title: str | None
    styles: tuple[str, ...]
    default_style: str | None
    formats: tuple[str, ...]
    links: dict[str, dict[str, Limits]]
    templates: tuple[tuple[str, str], ...]  # (format, template) of resourceType="tile"
    dimensions: dict[str, str]  # identifier -> default value
    wgs84_bounds: tuple[float, float, float, float] | None


@attrs.frozen
class Capabilities:
    """What the adapter needs from a WMTS capabilities document."""

    layers: dict[str, Layer]
    matrix_sets: dict[str, MatrixSet]
    kvp_url: str | None  # the GetTile KVP endpoint of OperationsMetadata


def parse_capabilities(body: bytes) -> Capabilities:
    """Parse screened capabilities bytes with OWSLib (blocking: run in the executor)."""
    wmts = WebMapTileService("http://capabilities.invalid/", xml=body)
    return Capabilities(
        layers={lid: _layer(meta) for lid, meta in wmts.contents.items()},
        matrix_sets={sid: _matrix_set(s) for sid, s in wmts.tilematrixsets.items()},
        kvp_url=_kvp_url(wmts.operations),
    )


def _matrix_set(tms: Any) -> MatrixSet:
    matrices = [
        Matrix(
            m.identifier,
            m.scaledenominator,
            m.topleftcorner,
            m.tilewidth,
            m.tileheight,
            m.matrixwidth,
            m.matrixheight,
        )
        for m in tms.tilematrix.values()
    ]
    matrices.sort(key=lambda m: -m.scale_denominator)  # stable: coarse to fine
    return MatrixSet(tms.identifier, tms.crs, tuple(matrices))


def _layer(meta: Any) -> Layer:
    styles = {name: info for name, info in meta.styles.items() if name}
    default = next((n for n, info in styles.items() if info.get("isDefault")), None)
    links = {
        set_id: {
            mid: Limits(lim.mintilerow, lim.maxtilerow, lim.mintilecol, lim.maxtilecol)
            for mid, lim in link.tilematrixlimits.items()
        }
        for set_id, link in meta.tilematrixsetlinks.items()
    }
    templates = tuple(
        (r["format"], r["template"]) for r in meta.resourceURLs if r["resourceType"] == "tile"
    )
    return Layer(
        identifier=meta.id,
        title=meta.title,
        styles=tuple(styles),
        default_style=default or next(iter(styles), None),
        formats=tuple(f for f in meta.formats if f),
        links=links,
        templates=templates,
        dimensions={k: d.get("default") or "" for k, d in meta.dimensions.items()},
        wgs84_bounds=getattr(meta, "boundingBoxWGS84", None),
    )


def _kvp_url(operations: list[Any]) -> str | None:
    """The GET endpoint of GetTile that accepts KVP (or states no encoding at all)."""
    for op in operations:
        if getattr(op, "name", None) != "GetTile":
            continue
        for method in op.methods:
            encodings = {str(v).lower() for c in method["constraints"] for v in c.values}
            if method["type"].lower() == "get" and (not encodings or "kvp" in encodings):
                return str(method["url"])
    return None


@lru_cache(maxsize=64)
def crs_from_identifier(identifier: str) -> pyproj.CRS:
    """The CRS of a SupportedCRS value; Web Mercator aliases become EPSG:3857."""
    try:
        crs = pyproj.CRS.from_user_input(identifier)
    except CRSError:
        match = EPSG_TAIL.search(identifier)  # e.g. urn:ogc:def:crs:EPSG:6.18:3:3857
        if not match:
            raise Unsupported(f"unknown CRS {identifier!r} in the capabilities") from None
        crs = pyproj.CRS.from_epsg(int(match.group(1)))
    if crs.to_epsg() in WEB_MERCATOR_CODES:
        return pyproj.CRS.from_epsg(3857)
    return crs


def meters_per_unit(crs: pyproj.CRS) -> float:
    """Metres per CRS unit; a degree is 2*pi*a/360 as the WMTS standard says."""
    if crs.is_geographic:
        radius = crs.ellipsoid.semi_major_metre if crs.ellipsoid else 6378137.0
        return 2 * math.pi * radius / 360.0
    return float(crs.axis_info[0].unit_conversion_factor)


def axis_inverted(crs: pyproj.CRS) -> bool:
    """True when the CRS's first axis is northing/latitude (as morecantile decides it)."""
    return crs.axis_info[0].abbrev.upper() in ("Y", "LAT", "N")


def _origin(corner: tuple[float, float], crs: pyproj.CRS, inverted: bool) -> tuple[float, float]:
    """TopLeftCorner in CRS axis order; some servers write lon,lat anyway, a |lat| > 90 shows it."""
    a, b = corner
    if crs.is_geographic and abs(a if inverted else b) > 90 >= abs(b if inverted else a):
        return b, a
    return a, b


@lru_cache(maxsize=64)
def tile_matrix_set(spec: MatrixSet) -> TileMatrixSet:
    """The morecantile set of ``spec``, matrix ids "0".."n-1" coarse to fine."""
    crs = crs_from_identifier(spec.crs)
    mpu = meters_per_unit(crs)
    inverted = axis_inverted(crs)
    matrices = [
        {
            "id": str(i),
            "scaleDenominator": m.scale_denominator,
            "cellSize": m.scale_denominator * OGC_PIXEL_SIZE / mpu,
            "pointOfOrigin": _origin(m.top_left, crs, inverted),
            "tileWidth": m.tile_width,
            "tileHeight": m.tile_height,
            "matrixWidth": m.matrix_width,
            "matrixHeight": m.matrix_height,
        }
        for i, m in enumerate(spec.matrices)
    ]
    return TileMatrixSet(  # type: ignore[no-untyped-call]
        id=re.sub(r"[^\w\-]", "_", spec.identifier),
        title=spec.identifier,
        crs=_crs_ref(crs),
        orderedAxes=[a.abbrev for a in crs.axis_info[:2]],
        tileMatrices=matrices,
    )


def _crs_ref(crs: pyproj.CRS) -> str:
    """The OGC URI of an EPSG or OGC CRS (what morecantile prints), else its WKT."""
    authority, code = crs.to_authority() or ("", "")
    if authority == "EPSG":
        return f"http://www.opengis.net/def/crs/EPSG/0/{code}"
    if authority == "OGC":
        return f"http://www.opengis.net/def/crs/OGC/1.3/{code}"
    return str(crs.to_wkt())


def quad_zooms(spec: MatrixSet) -> list[int] | None:
    """The Web Mercator zoom of each matrix when ``spec`` is a GoogleMapsCompatible-like quad."""
    try:
        if crs_from_identifier(spec.crs).to_epsg() != 3857:
            return None
    except Unsupported:
        return None
    zooms = []
    for m in spec.matrices:
        zoom = round(math.log2(max(m.matrix_width, 1)))
        expected = EARTH_CIRCUMFERENCE / (m.tile_width * 2**zoom)
        x, y = m.top_left
        if (
            m.tile_width != m.tile_height
            or m.matrix_width != 2**zoom
            or m.matrix_height != 2**zoom
            or abs(m.scale_denominator * OGC_PIXEL_SIZE / expected - 1) > 1e-4
            or abs(x + MERCATOR_HALF_EXTENT) > 1
            or abs(y - MERCATOR_HALF_EXTENT) > 1
        ):
            return None
        zooms.append(zoom)
    return zooms
