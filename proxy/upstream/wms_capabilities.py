"""WMS capabilities (1.1.1 and 1.3.0) as plain values, and their JSON summary.

OWSLib parses the screened bytes (never fetching anything itself); MaxWidth and
MaxHeight, which OWSLib skips, are read from the document directly.
"""

from __future__ import annotations

from typing import Any

import attrs
from defusedxml import ElementTree
from owslib.wms import WebMapService

from streaming.errors import SourceBadResponse
from streaming.types import BBox

VERSIONS = ("1.1.0", "1.1.1", "1.3.0")  # served; 1.1.0 follows the 1.1.1 rules
PARSERS = ("1.1.1", "1.3.0")  # OWSLib's readers


@attrs.frozen
class WMSStyle:
    """A style a layer offers."""

    name: str
    title: str


@attrs.frozen
class WMSLayer:
    """A named layer of the capabilities (inherited CRSs and styles included)."""

    name: str
    title: str | None
    styles: tuple[WMSStyle, ...]
    crs: tuple[str, ...]
    bounding_boxes: tuple[tuple[str, BBox], ...]  # (CRS code, bbox in x,y order)
    wgs84_bounds: BBox | None


@attrs.frozen
class WMSCapabilities:
    """What the adapter needs from a WMS capabilities document."""

    version: str  # as the server answered it; only VERSIONS are served
    title: str | None
    layers: tuple[WMSLayer, ...]
    formats: tuple[str, ...]
    getmap_url: str | None
    max_width: int | None
    max_height: int | None

    def layer(self, name: str) -> WMSLayer | None:
        """The named layer, if the server has it."""
        return next((layer for layer in self.layers if layer.name == name), None)


def parse_capabilities(body: bytes) -> WMSCapabilities:
    """Parse a (screened) WMS capabilities document; blocking, run it in the executor."""
    root = ElementTree.fromstring(body, forbid_dtd=False)
    tag = _local(root.tag)
    if tag not in ("WMT_MS_Capabilities", "WMS_Capabilities"):
        raise SourceBadResponse(
            f"the document is not WMS capabilities (root element <{tag}>)",
            hint="check that the URL is the GetCapabilities URL of a WMS",
        )
    raw = root.get("version", "").strip()
    # Reported as the server says (1.1.0 stays 1.1.0); read with its family's parser.
    version = raw if raw in VERSIONS else next((v for v in PARSERS if raw[:3] == v[:3]), raw)
    max_width, max_height = _service_limits(root)
    if version not in VERSIONS:
        return WMSCapabilities(raw, None, (), (), None, max_width, max_height)
    parser = next(v for v in PARSERS if version[:3] == v[:3])
    wms = WebMapService("", version=parser, xml=body)  # xml given: OWSLib fetches nothing
    try:
        getmap = wms.getOperationByName("GetMap")
    except KeyError:
        formats: tuple[str, ...] = ()
        url = None
    else:
        formats = tuple(f.strip() for f in getmap.formatOptions if f)
        url = next((m["url"] for m in getmap.methods if m["type"].lower() == "get"), None)
    layers = tuple(_layer(cm) for cm in wms.contents.values() if cm.name)
    title = wms.identification.title
    return WMSCapabilities(version, title, layers, formats, url, max_width, max_height)


def _layer(cm: Any) -> WMSLayer:
    styles = tuple(WMSStyle(n, s.get("title") or n) for n, s in cm.styles.items())
    boxes = getattr(cm, "crs_list", None)  # 1.3.0: every BoundingBox, x,y ordered
    if boxes is None:  # 1.1.1: OWSLib keeps the first BoundingBox only
        boxes = [cm.boundingBox] if cm.boundingBox and cm.boundingBox[4] else []
    wgs84 = cm.boundingBoxWGS84
    return WMSLayer(
        name=cm.name,
        title=cm.title,
        styles=styles,
        crs=tuple(sorted(set(cm.crsOptions))),
        bounding_boxes=tuple((str(b[4]), BBox(*map(float, b[:4]))) for b in boxes),
        wgs84_bounds=BBox(*map(float, wgs84[:4])) if wgs84 else None,
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _service_limits(root: Any) -> tuple[int | None, int | None]:
    """MaxWidth/MaxHeight of <Service> (OWSLib does not read them)."""
    limits: dict[str, int] = {}
    for service in (el for el in root if _local(el.tag) == "Service"):
        for el in service:
            name = _local(el.tag)
            if name in ("MaxWidth", "MaxHeight") and (el.text or "").strip().isdigit():
                limits[name] = int(el.text.strip())
    return limits.get("MaxWidth") or None, limits.get("MaxHeight") or None


def summarize(caps: WMSCapabilities) -> dict[str, Any]:
    """Layers with styles, CRSs and bounds; formats; MaxWidth/MaxHeight; version."""
    return {
        "version": caps.version,
        "title": caps.title,
        "formats": list(caps.formats),
        "max_width": caps.max_width,
        "max_height": caps.max_height,
        "layers": [
            {
                "name": layer.name,
                "title": layer.title,
                "styles": [{"name": s.name, "title": s.title} for s in layer.styles],
                "crs": list(layer.crs),
                "wgs84_bounds": list(layer.wgs84_bounds) if layer.wgs84_bounds else None,
                "bounding_boxes": [
                    {"crs": code, "bbox": list(bbox)} for code, bbox in layer.bounding_boxes
                ],
            }
            for layer in caps.layers
        ],
    }
