"""WMS servers, versions 1.1.1 and 1.3.0: layer/format/CRS choice and GetMap.

The capabilities document is fetched and screened by :mod:`proxy.upstream.capabilities`
and parsed, in the executor, by :mod:`proxy.upstream.wms_capabilities`. GetMap follows
each version's rules: 1.1.1 sends ``SRS`` and an x,y ``BBOX``; 1.3.0 sends ``CRS`` and a
``BBOX`` in the CRS's own axis order, so EPSG:4326 is lat,lon (:mod:`proxy.upstream.crs`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import attrs
from rasterio.crs import CRS

from proxy.errors import InvalidInput
from proxy.schemas import WMSConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from proxy.upstream.capabilities import cached_capabilities
from proxy.upstream.crs import northing_first, rasterio_crs
from proxy.upstream.wms_capabilities import (
    VERSIONS,
    WMSCapabilities,
    WMSLayer,
    parse_capabilities,
    summarize,
)
from streaming.errors import InvalidRead, SourceBadResponse, SourceUnsupported
from streaming.grid import WEB_MERCATOR_ALIASES, WEB_MERCATOR_CODES
from streaming.sources import FetchedImage
from streaming.types import BBox

DEFAULT_VERSION = "1.3.0"
# Past this a request is split anyway: smaller images decode faster and fetch in parallel.
DEFAULT_MAX_SIZE = 4096
# Query keys the adapter sets itself; a copy in the user's URL is dropped, in any case.
OGC_KEYS = frozenset(
    {"service", "request", "version", "layers", "styles", "srs", "crs", "bbox", "width"}
    | {"height", "format", "transparent", "exceptions", "bgcolor"}
)
EXCEPTIONS_FORMAT = {"1.1.1": "application/vnd.ogc.se_xml", "1.3.0": "XML"}
DECODABLE = ("png", "jpeg", "jpg", "gif", "tiff", "webp")
LISTED = 20  # names shown in an error message
MAX_CRS = 8  # CRSs kept per source: the preferred ones, then a few others
SIMPLE_CODE = re.compile(r"(?:EPSG|ESRI):(\d+)$")


def dialect(version: str) -> str:
    """The rules a version follows: 1.1.0 speaks like 1.1.1 (SRS, x,y BBOX)."""
    return "1.3.0" if version.startswith("1.3") else "1.1.1"


def bbox_param(bbox: BBox, code: str, version: str) -> str:
    """The GetMap BBOX value: x,y order, except northing-first CRSs in 1.3.0."""
    values: Sequence[float] = bbox
    if dialect(version) == "1.3.0" and northing_first(code):
        values = (bbox.bottom, bbox.left, bbox.top, bbox.right)
    return ",".join(repr(float(v)) for v in values)


def split_url(url: str) -> tuple[str, dict[str, str], str | None]:
    """The URL without its query, the user's own params (MAP=...), and any VERSION given."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = {k: v for k, v in pairs if k.lower() not in OGC_KEYS}
    version = next((v for k, v in pairs if k.lower() == "version" and v), None)
    return base, query, version


async def read_capabilities(
    config: WMSConfig, connection: ServerConnection
) -> tuple[WMSCapabilities, str]:
    """The parsed capabilities of the config's URL (cached), and the GetMap URL to use."""
    base, query, url_version = split_url(config.url)
    params = {
        **query,
        "SERVICE": "WMS",
        "REQUEST": "GetCapabilities",
        "VERSION": config.version or url_version or DEFAULT_VERSION,
    }
    caps = await cached_capabilities(connection, base, params, parse_capabilities)
    return caps, getmap_url(config.url, caps.getmap_url)


def getmap_url(capabilities_url: str, online_resource: str | None) -> str:
    """The GetMap endpoint: the OnlineResource, with the user's own params it lacks.

    Without a usable OnlineResource the capabilities URL is used, as GDAL and QGIS do.
    """
    base, query, _ = split_url(capabilities_url)
    if online_resource and online_resource.strip():
        resolved = urljoin(capabilities_url, online_resource.strip())
        if urlsplit(resolved).scheme in ("http", "https"):
            base, own, _ = split_url(resolved)
            names = {k.lower() for k in own}
            query = {**{k: v for k, v in query.items() if k.lower() not in names}, **own}
    return urlunsplit((*urlsplit(base)[:3], _encode(query), ""))


def _encode(query: Mapping[str, str]) -> str:
    return urlencode(list(query.items()), safe="/:,")


def select_layers(config: WMSConfig, caps: WMSCapabilities) -> list[WMSLayer]:
    """The configured layers (all must exist), or the first named layer."""
    if not caps.layers:
        raise SourceUnsupported(
            "the WMS declares no named layer", hint="check the capabilities URL"
        )
    if not config.layers:
        return [caps.layers[0]]
    unknown = [name for name in config.layers if caps.layer(name) is None]
    if unknown:
        raise InvalidInput(
            f"unknown WMS layer(s) {', '.join(unknown)}; the server has: "
            + _listing([layer.name for layer in caps.layers]),
            hint="pick layer names from the capabilities",
        )
    return [layer for name in config.layers if (layer := caps.layer(name)) is not None]


def select_styles(config: WMSConfig, layers: Sequence[WMSLayer]) -> list[str]:
    """One style per layer; empty means the server's default style."""
    if len(config.styles) > len(layers):
        raise InvalidInput(f"{len(config.styles)} styles for {len(layers)} layer(s)")
    styles = [*config.styles, *[""] * (len(layers) - len(config.styles))]
    for layer, style in zip(layers, styles, strict=True):
        names = [s.name for s in layer.styles]
        if style and names and style not in names:
            raise InvalidInput(
                f"layer {layer.name} has no style {style!r}; it has: {_listing(names)}"
            )
    return styles


def select_format(config: WMSConfig, caps: WMSCapabilities) -> str:
    """The configured format, else PNG, else JPEG, else the first decodable image format."""
    offered = caps.formats
    if config.format:
        if offered and config.format.lower() not in (f.lower() for f in offered):
            raise InvalidInput(
                f"the WMS does not offer format {config.format!r}; it offers: "
                + _listing(list(offered))
            )
        return config.format
    if not offered:
        return "image/png"
    for exact in ("image/png", "image/jpeg"):
        if exact in offered:
            return exact
    images = [f for f in offered if f.lower().startswith("image/") and _decodable(f)]
    images.sort(key=lambda f: 0 if "png" in f.lower() else 1 if "jp" in f.lower() else 2)
    if not images:
        raise SourceUnsupported(
            f"the WMS offers no image format we can decode: {_listing(offered)}"
        )
    return images[0]


def _decodable(fmt: str) -> bool:
    return any(kind in fmt.lower() for kind in DECODABLE)


def select_crs(config: WMSConfig, layers: Sequence[WMSLayer]) -> list[tuple[CRS, str]]:
    """(rasterio CRS, server code) pairs, preferred first: EPSG:3857, EPSG:4326, others.

    Blocking (PROJ parses), run it in the executor. GeoServer lists thousands of CRSs
    per layer: the known ones are found by name, and only a few others are parsed.
    """
    common = set(layers[0].crs).intersection(*(layer.crs for layer in layers[1:]))
    offered = [c for c in layers[0].crs if c in common]
    if config.crs:
        return [_configured_crs(config.crs, offered)]
    ranks = {c: rank for c in offered if (rank := _known_rank(c)) is not None}
    known = sorted(ranks, key=lambda c: (ranks[c], c))
    others = sorted(c for c in offered if c not in ranks)
    pairs: list[tuple[CRS, str]] = []
    for code in [*known, *others]:
        if len(pairs) >= MAX_CRS:
            break
        crs = rasterio_crs(code)
        if crs is not None and all(crs != known for known, _ in pairs):
            pairs.append((crs, code))
    if not pairs:
        raise SourceUnsupported(
            f"none of the layer's CRSs can be used: {_listing(offered) or '(none)'}",
            hint="set crs in the server config to one the server renders",
        )
    return pairs


def _configured_crs(wanted: str, offered: Sequence[str]) -> tuple[CRS, str]:
    """The configured CRS under the server's name for it (same name first, then same CRS)."""
    crs = rasterio_crs(wanted)
    if crs is None:
        raise InvalidInput(f"unknown CRS {wanted!r}")
    if not offered:
        return crs, wanted
    same = next((c for c in offered if c.strip().upper() == wanted.strip().upper()), None)
    match = same or next((c for c in offered if rasterio_crs(c) == crs), None)
    if match is None:
        raise InvalidInput(f"the layer does not offer CRS {wanted}; it offers: {_listing(offered)}")
    return crs, match


def _known_rank(code: str) -> int | None:
    """Rank of the CRSs every reader wants, by name alone (no PROJ); None for the others."""
    upper = code.strip().upper()
    if upper == "EPSG:3857":
        return 0
    match = SIMPLE_CODE.match(upper)
    if upper in WEB_MERCATOR_ALIASES or (match and int(match[1]) in WEB_MERCATOR_CODES):
        return 1
    return {"EPSG:4326": 2, "CRS:84": 3, "OGC:CRS84": 3}.get(upper)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" (and {len(names) - LISTED} more)" if len(names) > LISTED else "")


@attrs.frozen
class GetMapSettings:
    """Everything fixed about this source's GetMap requests."""

    url: str
    version: str
    layers: tuple[str, ...]
    styles: tuple[str, ...]
    format: str
    crs_codes: tuple[tuple[CRS, str], ...]
    max_size: tuple[int, int]


class WMSSource:
    """A :class:`streaming.sources.BBoxSource` rendered by WMS GetMap requests."""

    def __init__(self, connection: ServerConnection, settings: GetMapSettings) -> None:
        self.connection = connection
        self.settings = settings

    @property
    def crs_list(self) -> list[CRS]:
        """CRSs the layers are offered in, preferred first."""
        return [crs for crs, _ in self.settings.crs_codes]

    @property
    def max_size(self) -> tuple[int, int]:
        """MaxWidth/MaxHeight of the server (at most 4096)."""
        return self.settings.max_size

    def code_for(self, crs: CRS) -> str:
        """The server's name for ``crs``."""
        for known, code in self.settings.crs_codes:
            if known == crs:
                return code
        raise InvalidRead(f"the WMS source does not render in {crs}")

    def getmap_params(self, bbox: BBox, crs: CRS, width: int, height: int) -> dict[str, str]:
        """The GetMap query of one request."""
        s = self.settings
        code = self.code_for(crs)
        params = {
            "SERVICE": "WMS",
            "VERSION": s.version,
            "REQUEST": "GetMap",
            "LAYERS": ",".join(s.layers),
            "STYLES": ",".join(s.styles),
            "SRS" if dialect(s.version) == "1.1.1" else "CRS": code,
            "BBOX": bbox_param(bbox, code, s.version),
            "WIDTH": str(width),
            "HEIGHT": str(height),
            "FORMAT": s.format,
            "EXCEPTIONS": EXCEPTIONS_FORMAT[dialect(s.version)],
        }
        if "png" in s.format.lower():
            params["TRANSPARENT"] = "TRUE"
        return params

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        """Render ``bbox`` with one GetMap; a ServiceException raises, even with HTTP 200."""
        params = self.getmap_params(bbox, crs, width, height)
        image = await self.connection.get_image(self.settings.url, params)
        if image is None:
            raise SourceBadResponse(
                "the WMS answered GetMap with no image",
                hint="check the layer, style and format in the server config",
            )
        return image


async def open_wms(config: WMSConfig, ctx: UpstreamContext) -> WMSSource:
    """Read the capabilities, check the config against them and build the source."""
    connection = ServerConnection(config, ctx)
    caps, url = await read_capabilities(config, connection)
    if caps.version not in VERSIONS:
        raise SourceUnsupported(
            f"WMS version {caps.version or '(none)'} is not supported",
            hint="versions 1.1.0, 1.1.1 and 1.3.0 are; set version in the config to ask for one",
        )
    layers = select_layers(config, caps)
    crs_codes: list[tuple[CRS, str]] = await ctx.run(select_crs, config, layers)
    settings = GetMapSettings(
        url=url,
        version=caps.version,
        layers=tuple(layer.name for layer in layers),
        styles=tuple(select_styles(config, layers)),
        format=select_format(config, caps),
        crs_codes=tuple(crs_codes),
        max_size=(
            min(caps.max_width or DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE),
            min(caps.max_height or DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE),
        ),
    )
    return WMSSource(connection, settings)


async def describe_wms(config: WMSConfig, ctx: UpstreamContext) -> dict[str, Any]:
    """A JSON-ready summary of the server's capabilities, for the API to show."""
    caps, _ = await read_capabilities(config, ServerConnection(config, ctx))
    return summarize(caps)
