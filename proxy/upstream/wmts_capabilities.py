"""WMTS capabilities as plain values, and WMTS TileMatrixSets as morecantile sets.

OWSLib parses the screened bytes (never fetching anything itself). Each WMTS
TileMatrixSet becomes a morecantile set whose matrix ids are "0".."n-1", coarse to
fine, as :class:`streaming.sources.TileSource` wants; the WMTS identifiers stay in
:attr:`MatrixSet.matrix_ids` to build the requests. ``cellSize`` is
``ScaleDenominator * 0.28 mm / metersPerUnit`` and ``pointOfOrigin`` is the
TopLeftCorner in the CRS's own axis order (lat,lon for EPSG:4326, judged by axis
direction). Mistakes of the document itself (a matrix identifier declared twice,
limits naming no matrix of their set) become :class:`DocumentWarning` values.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree as XMLTree

import attrs
from defusedxml import ElementTree
from morecantile import TileMatrixSet
from owslib.wmts import WebMapTileService

from proxy.upstream.crs import (
    axis_inverted,
    corner_in_axis_order,
    crs_from_identifier,
    crs_uri,
    meters_per_unit,
)
from streaming.grid import MERCATOR_HALF_EXTENT, is_web_mercator, mercator_resolution

OGC_PIXEL_SIZE = 0.00028  # metres: the standardized rendering pixel of ScaleDenominator
WMTS_NS = "{http://www.opengis.net/wmts/1.0}"
OWS_NS = "{http://www.opengis.net/ows/1.1}"


@attrs.frozen
class DocumentWarning:
    """Something wrong in the capabilities document itself, worked around."""

    code: str
    message: str
    hint: str | None = None


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
    duplicates: tuple[str, ...] = ()  # matrix identifiers declared more than once

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
    body, duplicates = _drop_duplicates(body)
    wmts = WebMapTileService("http://capabilities.invalid/", xml=body)
    return Capabilities(
        layers={lid: _layer(meta) for lid, meta in wmts.contents.items()},
        matrix_sets={
            sid: _matrix_set(s, duplicates.get(sid, ())) for sid, s in wmts.tilematrixsets.items()
        },
        kvp_url=_kvp_url(wmts.operations),
    )


def _drop_duplicates(body: bytes) -> tuple[bytes, dict[str, tuple[str, ...]]]:
    """The document without repeated TileMatrix (and TileMatrixLimits) identifiers.

    OWSLib would keep the last one and only emit a RuntimeWarning; the first is kept
    here and the repeated identifiers are returned, per set, to warn about.
    """
    root = ElementTree.fromstring(body, forbid_dtd=False)
    found: dict[str, tuple[str, ...]] = {}
    changed = False
    for tms in root.iter(f"{WMTS_NS}TileMatrixSet"):
        twice = _drop_repeated(tms, f"{WMTS_NS}TileMatrix", f"{OWS_NS}Identifier")
        if twice:
            found[(tms.findtext(f"{OWS_NS}Identifier") or "").strip()] = twice
            changed = True
    for limits in root.iter(f"{WMTS_NS}TileMatrixSetLimits"):
        changed |= bool(
            _drop_repeated(limits, f"{WMTS_NS}TileMatrixLimits", f"{WMTS_NS}TileMatrix")
        )
    return (XMLTree.tostring(root) if changed else body), found


def _drop_repeated(parent: Any, tag: str, key: str) -> tuple[str, ...]:
    seen: set[str] = set()
    repeated: list[str] = []
    for child in parent.findall(tag):
        name = (child.findtext(key) or "").strip()
        if name and name in seen:
            parent.remove(child)
            repeated.append(name)
        seen.add(name)
    return tuple(dict.fromkeys(repeated))


def duplicate_warnings(spec: MatrixSet) -> list[DocumentWarning]:
    """A warning per matrix identifier the set declares more than once."""
    return [
        DocumentWarning(
            "duplicate_tile_matrix",
            f"tile matrix set {spec.identifier!r} declares TileMatrix {mid!r} more than once; "
            "only the first one is used",
            "the server's capabilities are wrong: ask its operator to fix them",
        )
        for mid in spec.duplicates
    ]


def match_limits(spec: MatrixSet, limits: dict[str, Limits]) -> dict[str, Limits]:
    """The limits of each matrix of ``spec``, by matrix identifier.

    Some servers name matrices in TileMatrixSetLimits with a prefix ("WGS84:0" for
    matrix "0"); like OpenLayers, an exact identifier wins, else the part after the
    last ':' is matched against the matrix identifier or the part after its last ':'.
    """
    matched: dict[str, Limits] = {}
    for mid in spec.matrix_ids:
        if mid in limits:
            matched[mid] = limits[mid]
            continue
        tail = mid.rsplit(":", 1)[-1]
        for name, lim in limits.items():
            if name.rsplit(":", 1)[-1] in (mid, tail):
                matched[mid] = lim
                break
    return matched


def limits_warnings(
    layer: str, spec: MatrixSet, limits: dict[str, Limits]
) -> list[DocumentWarning]:
    """A warning when TileMatrixSetLimits name no matrix of the set (they are then ignored)."""
    if not limits or match_limits(spec, limits):
        return []
    return [
        DocumentWarning(
            "limits_match_no_matrix",
            f"the TileMatrixSetLimits of layer {layer!r} name no matrix of tile matrix set "
            f"{spec.identifier!r} (they name {', '.join(list(limits)[:5])}; the set has "
            f"{', '.join(spec.matrix_ids[:5])}); the limits are ignored",
            "the server's capabilities are inconsistent; tiles are asked for everywhere",
        )
    ]


def document_warnings(caps: Capabilities) -> list[DocumentWarning]:
    """Every mistake of the document: duplicate matrices, limits that name no matrix."""
    found = [w for spec in caps.matrix_sets.values() for w in duplicate_warnings(spec)]
    for layer in caps.layers.values():
        for set_id, limits in layer.links.items():
            if set_id in caps.matrix_sets:
                found += limits_warnings(layer.identifier, caps.matrix_sets[set_id], limits)
    return found


def _matrix_set(tms: Any, duplicates: tuple[str, ...]) -> MatrixSet:
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
    return MatrixSet(tms.identifier, tms.crs, tuple(matrices), duplicates)


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
            "pointOfOrigin": corner_in_axis_order(m.top_left, crs, inverted),
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
        crs=crs_uri(crs),
        # Direction-based names, so morecantile's abbreviation test agrees with ours.
        orderedAxes=_ordered_axes(crs, inverted),
        tileMatrices=matrices,
    )


def _ordered_axes(crs: Any, inverted: bool) -> list[str]:
    names = ["Lat", "Lon"] if crs.is_geographic else ["N", "E"]
    return names if inverted else names[::-1]


def quad_zooms(spec: MatrixSet) -> list[int] | None:
    """The Web Mercator zoom of each matrix when ``spec`` is a GoogleMapsCompatible-like quad."""
    if not is_web_mercator(spec.crs):
        return None
    zooms = []
    for m in spec.matrices:
        zoom = round(math.log2(max(m.matrix_width, 1)))
        expected = mercator_resolution(zoom, m.tile_width)
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
