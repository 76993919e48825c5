"""Recognize the URL forms users paste: ArcGIS REST URLs and WMS GetMap requests.

Pure functions on strings, no requests: :mod:`proxy.upstream.detect` and the config
schemas use them to turn a pasted URL into the canonical one plus config fields.
Queries are edited piece by piece, so what is kept is kept byte for byte.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import attrs

from proxy.findings import Finding
from proxy.net.redact import mask_url
from proxy.upstream.templates import canonical, decode_braces
from streaming.grid import MAX_ZOOM

ARCGIS_SERVICE = re.compile(r"/(mapserver|imageserver)(?=/|$)", re.I)
# Other protocols an ArcGIS service speaks at sub-paths; those URLs are not REST URLs.
ARCGIS_OTHER = ("wmsserver", "wmts", "kml", "wfsserver", "wcsserver")
WMS_KEYS = frozenset(
    {"service", "request", "version", "layers", "styles", "srs", "crs", "bbox", "width"}
    | {"height", "format", "transparent", "exceptions", "bgcolor"}
)
GETMAP_ONLY = frozenset({"bbox", "width", "height", "layers"})
# Image formats of export/exportImage that decode to imagery (not LERC, TIFF values, PDF).
ARCGIS_FORMATS = ("png", "png8", "png24", "png32", "jpg", "jpgpng")
VERSIONS = {"1.3.0": "1.3.0", "1.1.1": "1.1.1", "1.1.0": "1.1.1", "1.1": "1.1.1"}


def query_pieces(query: str) -> list[tuple[str, str, str]]:
    """``(lower-case key, decoded value, raw piece)`` of each ``&``-separated piece."""
    pieces = []
    for raw in query.split("&"):
        if raw:
            key, _, value = raw.partition("=")
            pieces.append((unquote_plus(key).strip().lower(), unquote_plus(value), raw))
    return pieces


def with_query(url: str, pieces: list[str]) -> str:
    """``url`` with its query replaced by the raw ``pieces`` (and no fragment)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="&".join(pieces), fragment=""))


@attrs.frozen
class ArcGISForm:
    """A URL inside an ArcGIS MapServer or ImageServer."""

    service_url: str  # .../MapServer or .../ImageServer, no query
    rest: str  # what followed it: "", "export", "tile/{z}/{y}/{x}", "0", ...
    query: tuple[tuple[str, str, str], ...]  # see query_pieces


def arcgis_form(url: str) -> ArcGISForm | None:
    """The ArcGIS service a URL points into, or ``None`` (WMSServer/WMTS are not REST)."""
    parts = urlsplit(decode_braces(url))
    match = ARCGIS_SERVICE.search(parts.path)
    if match is None:
        return None
    rest = parts.path[match.end() :].strip("/")
    if rest.split("/", 1)[0].lower() in ARCGIS_OTHER:
        return None
    kind = "MapServer" if match.group(1).lower() == "mapserver" else "ImageServer"
    path = parts.path[: match.start()] + "/" + kind
    service = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return ArcGISForm(service, rest, tuple(query_pieces(parts.query)))


@attrs.frozen
class WMSForm:
    """A WMS URL split into the capabilities URL and the GetMap values it carried."""

    url: str  # without the WMS keys; other params (MAP=..., tokens) kept
    fields: dict[str, Any]  # layers, styles, format, crs, version taken from the URL
    dropped: tuple[str, ...]  # WMS keys removed that became no field (BBOX, WIDTH, ...)
    is_getmap: bool


def is_placeholder(value: str) -> bool:
    """True for an editor-index placeholder value such as ``{proj}`` or ``{bbox}``."""
    return "{" in decode_braces(value)


def wms_form(url: str) -> WMSForm:
    """The parts of a WMS URL: a GetMap or GetCapabilities request, or a plain endpoint."""
    parts = urlsplit(url)
    kept, found = [], {}
    for key, value, raw in query_pieces(parts.query):
        if key in WMS_KEYS:
            found[key] = value
        else:
            kept.append(raw)
    fields: dict[str, Any] = {}
    layers = [v.strip() for v in found.get("layers", "").split(",") if v.strip()]
    if layers and not is_placeholder(found["layers"]):
        fields["layers"] = layers
    styles = [v.strip() for v in found.get("styles", "").split(",")]
    if any(styles) and not is_placeholder(found["styles"]):
        fields["styles"] = styles
    for key in ("format", "crs", "srs"):
        value = found.get(key, "").strip()
        if value and not is_placeholder(value):
            fields["format" if key == "format" else "crs"] = value
    version = VERSIONS.get(found.get("version", "").strip())
    if version:
        fields["version"] = version
    used = {"layers", "styles", "format", "crs", "srs", "version"}
    dropped = tuple(sorted(k.upper() for k in found if k not in used or not found[k].strip()))
    is_getmap = found.get("request", "").lower() == "getmap" or bool(GETMAP_ONLY & set(found))
    return WMSForm(with_query(url, kept), fields, dropped, is_getmap)


# What normalizing a pasted config changed or noticed: a test-connection finding.
Note = Finding


Normalized = tuple[dict[str, Any], list[Note]]


def normalize_xyz(data: dict[str, Any]) -> Normalized:
    """An xyz config with its template canonical; ``{switch:}``/``{zoom+N}`` moved to fields."""
    url = data.get("url")
    if not isinstance(url, str):
        return data, []
    out, notes = dict(data), []
    form = canonical(url.strip())
    out["url"] = form.url
    if form.url != decode_braces(url.strip()):  # decoding alone: test connection says so
        notes.append(
            Note("template_normalized", "info", f"the template is stored as {mask_url(form.url)}")
        )
    if form.subdomains is not None:
        out["subdomains"] = list(form.subdomains)
        notes.append(
            Note(
                "subdomains_from_switch",
                "info",
                f"{{switch:...}} became {{s}} with subdomains {list(form.subdomains)}",
            )
        )
    if form.zoom_offset and isinstance(out.get("zoom_offset", 0), int):
        out["zoom_offset"] = out.get("zoom_offset", 0) + form.zoom_offset
        notes.append(
            Note(
                "zoom_offset_from_template",
                "info",
                f"the template's zoom offset became zoom_offset {out['zoom_offset']}",
            )
        )
    if isinstance(out.get("keys"), dict):
        out["keys"] = {str(k).lower(): v for k, v in out["keys"].items()}
    max_zoom = out.get("max_zoom")
    if isinstance(max_zoom, int) and not isinstance(max_zoom, bool) and max_zoom > MAX_ZOOM:
        out["max_zoom"] = MAX_ZOOM
        notes.append(
            Note(
                "max_zoom_clamped",
                "warning",
                f"max_zoom {max_zoom} is past the deepest zoom of the grid; it is {MAX_ZOOM}",
            )
        )
    return out, notes


def normalize_wms(data: dict[str, Any]) -> Normalized:
    """A wms config whose URL is the capabilities URL; GetMap values became its fields."""
    url = data.get("url")
    if not isinstance(url, str):
        return data, []
    form = wms_form(url.strip())
    out, notes = {**data, "url": form.url}, []
    taken, ignored = {}, []
    for key, value in form.fields.items():
        if data.get(key) and data[key] != value:
            ignored.append(key)
        else:
            out[key] = taken[key] = value
    if form.is_getmap:
        listed = ", ".join(f"{k} {v}" for k, v in taken.items()) or "nothing"
        dropped = f"; dropped {', '.join(form.dropped)}" if form.dropped else ""
        notes.append(
            Note(
                "wms_getmap_url",
                "info",
                f"the URL is a GetMap request: the capabilities URL {mask_url(form.url)} was "
                f"derived from it; taken from it: {listed}{dropped}",
            )
        )
    elif form.url != url.strip():
        notes.append(
            Note(
                "wms_url_normalized",
                "info",
                f"the WMS URL is stored as {mask_url(form.url)}; its WMS keys became fields",
            )
        )
    if ignored:
        notes.append(
            Note(
                "url_values_ignored",
                "warning",
                f"the URL's {', '.join(ignored)} differ from the config's; the config's were kept",
            )
        )
    return out, notes


def normalize_arcgis(data: dict[str, Any]) -> Normalized:
    """An arcgis config whose URL is the service URL (from export, tile, layer, ?f= URLs)."""
    url = data.get("url")
    form = arcgis_form(url.strip()) if isinstance(url, str) else None
    if form is None:
        return data, []
    out = {**data, "url": form.service_url}
    dropped = []
    for key, value, _raw in form.query:
        if key == "token" and value:
            params = out.get("params")
            out["params"] = {"token": value, **(params if isinstance(params, dict) else {})}
        elif (
            key == "format"
            and form.rest.lower() in ("export", "exportimage")
            and not out.get("format")
            and value.lower() in ARCGIS_FORMATS
        ):
            out["format"] = value.lower()
        else:
            dropped.append(key)
    if not form.rest and not form.query:
        return out, []
    what = f"/{form.rest}" if form.rest else "a query"
    extra = f"; dropped the query keys {', '.join(sorted(set(dropped)))}" if dropped else ""
    return out, [
        Note(
            "arcgis_service_url",
            "info",
            f"the URL points into an ArcGIS service ({what}): the service URL "
            f"{mask_url(form.service_url)} is used{extra}",
        )
    ]
