"""A fake WMS (1.1.1 and 1.3.0) on loopback, rendering the ground truth like a real server.

It honours the version's axis order (1.3.0 + EPSG:4326 reads BBOX as lat,lon), so a
client that swaps axes gets pixels from the wrong place. Errors are ServiceException XML
sent with HTTP 200, as MapServer and GeoServer do.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from aiohttp import web
from pyproj import Transformer
from rasterio.crs import CRS

from tests.groundtruth import CENTER_X, CENTER_Y, GT_RES, GT_SIZE
from tests.upstreams.render import GroundTruthRenderer

REQUESTS = web.AppKey("requests", list)  # one dict per request: upper-cased params + PATH

HALF = GT_RES * GT_SIZE / 2
MERCATOR_BOUNDS = (CENTER_X - HALF, CENTER_Y - HALF, CENTER_X + HALF, CENTER_Y + HALF)
LONLAT_BOUNDS = Transformer.from_crs(3857, 4326, always_xy=True).transform_bounds(*MERCATOR_BOUNDS)
LAYERS = ("truth", "world", "retired")  # "retired" is listed but refused by GetMap
STYLES = ("default", "contrast")
FORMATS = {"image/jpeg": "jpeg", "image/png": "png"}
CRS_CODES = {
    "1.1.0": ("EPSG:4326", "EPSG:3857"),  # answered like 1.1.1
    "1.1.1": ("EPSG:4326", "EPSG:3857"),
    "1.3.0": ("EPSG:4326", "EPSG:3857", "CRS:84"),
}
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'

# Entity attacks a hostile server could send as capabilities.
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE WMS_Capabilities [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<WMS_Capabilities version="1.3.0" xmlns="http://www.opengis.net/wms">
 <Service><Name>WMS</Name><Title>&lol9;</Title></Service>
</WMS_Capabilities>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE WMS_Capabilities [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<WMS_Capabilities version="1.3.0" xmlns="http://www.opengis.net/wms">
 <Service><Name>WMS</Name><Title>&xxe;</Title></Service>
</WMS_Capabilities>"""


def negotiate(asked: str | None, versions: Sequence[str]) -> str:
    """The version a server answers: the one asked if known, else its highest."""
    return asked if asked in versions else max(versions)


def service_exception(message: str, version: str, code: str = "") -> web.Response:
    """A ServiceExceptionReport with HTTP 200, in the version's dialect."""
    attr = f' code="{code}"' if code else ""
    if version == "1.1.1":
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
            '<!DOCTYPE ServiceExceptionReport SYSTEM "http://schemas.opengis.net/wms/1.1.1/'
            'exception_1_1_1.dtd">\n<ServiceExceptionReport version="1.1.1">\n'
            f"<ServiceException{attr}>\n{escape(message)}\n</ServiceException>\n"
            "</ServiceExceptionReport>"
        )
        return web.Response(text=body, content_type="application/vnd.ogc.se_xml")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ServiceExceptionReport version="1.3.0" '
        'xmlns="http://www.opengis.net/ogc">\n'
        f"<ServiceException{attr}>{escape(message)}</ServiceException>\n"
        "</ServiceExceptionReport>"
    )
    return web.Response(text=body, content_type="text/xml")


def capabilities(version: str, online: str, max_size: tuple[int, int]) -> str:
    """A capabilities document of ``version`` whose GetMap lives at ``online``."""
    v13 = version == "1.3.0"
    crs_tag = "CRS" if v13 else "SRS"
    west, south, east, north = LONLAT_BOUNDS
    if v13:
        geo = (
            f"<EX_GeographicBoundingBox><westBoundLongitude>{west}</westBoundLongitude>"
            f"<eastBoundLongitude>{east}</eastBoundLongitude><southBoundLatitude>{south}"
            f"</southBoundLatitude><northBoundLatitude>{north}</northBoundLatitude>"
            "</EX_GeographicBoundingBox>"
            # 1.3.0 orders BoundingBox along the CRS axes: EPSG:4326 is lat,lon.
            f'<BoundingBox CRS="EPSG:4326" minx="{south}" miny="{west}" maxx="{north}" '
            f'maxy="{east}"/>'
        )
    else:
        geo = (
            f'<LatLonBoundingBox minx="{west}" miny="{south}" maxx="{east}" maxy="{north}"/>'
            f'<BoundingBox SRS="EPSG:3857" minx="{MERCATOR_BOUNDS[0]}" '
            f'miny="{MERCATOR_BOUNDS[1]}" maxx="{MERCATOR_BOUNDS[2]}" maxy="{MERCATOR_BOUNDS[3]}"/>'
        )
    if v13:
        geo += (
            f'<BoundingBox CRS="EPSG:3857" minx="{MERCATOR_BOUNDS[0]}" miny="{MERCATOR_BOUNDS[1]}"'
            f' maxx="{MERCATOR_BOUNDS[2]}" maxy="{MERCATOR_BOUNDS[3]}"/>'
        )
    styles = "".join(
        f"<Style><Name>{s}</Name><Title>{s.title()} style</Title></Style>" for s in STYLES
    )
    crs = "".join(f"<{crs_tag}>{c}</{crs_tag}>" for c in CRS_CODES[version])
    resource = f'<OnlineResource {XLINK} xlink:type="simple" xlink:href="{escape(online)}"/>'
    dcp = f"<DCPType><HTTP><Get>{resource}</Get></HTTP></DCPType>"
    formats = "".join(f"<Format>{f}</Format>" for f in FORMATS)
    root, head = (
        ("WMS_Capabilities", f'xmlns="http://www.opengis.net/wms" {XLINK}')
        if v13
        else ("WMT_MS_Capabilities", "")
    )
    doctype = (
        ""
        if v13
        else '<!DOCTYPE WMT_MS_Capabilities SYSTEM "http://schemas.opengis.net/wms/1.1.1/'
        'WMS_MS_Capabilities.dtd" [ <!ELEMENT VendorSpecificCapabilities EMPTY> ]>'
    )
    world = "<Layer><Name>world</Name><Title>World</Title></Layer>"
    retired = "<Layer><Name>retired</Name><Title>Retired</Title></Layer>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<{root} version="{version}" {head}>'
        f"<Service><Name>{'WMS' if v13 else 'OGC:WMS'}</Name><Title>Fake WMS</Title>"
        f"{resource}<MaxWidth>{max_size[0]}</MaxWidth><MaxHeight>{max_size[1]}</MaxHeight>"
        f"</Service><Capability><Request>"
        f"<GetCapabilities><Format>text/xml</Format>{dcp}</GetCapabilities>"
        f"<GetMap>{formats}{dcp}</GetMap></Request>"
        f"<Exception><Format>{'XML' if v13 else 'application/vnd.ogc.se_xml'}</Format>"
        f"</Exception><Layer><Title>Root</Title>{crs}"
        f'<Layer queryable="0"><Name>truth</Name><Title>Ground truth</Title>{geo}{styles}'
        f"</Layer>{world}{retired}</Layer></Capability></{root}>"
    )


def getmap_refusal(
    params: dict[str, str], versions: Sequence[str], max_size: tuple[int, int]
) -> tuple[str, str] | None:
    """(message, code) of the ServiceException a GetMap deserves, or None if it is valid."""
    version = params["VERSION"]
    for layer in params.get("LAYERS", "").split(","):
        if layer not in LAYERS or layer == "retired":
            return f"Layer '{layer}' is not defined", "LayerNotDefined"
    if "STYLES" not in params:
        return "STYLES is mandatory", "MissingParameterValue"
    for style in params["STYLES"].split(","):
        if style and style not in STYLES:
            return f"unknown style {style!r}", "StyleNotDefined"
    code = params.get("CRS" if version == "1.3.0" else "SRS", "")
    if code not in CRS_CODES[version]:
        return f"unsupported CRS {code!r}", "InvalidCRS"
    if params.get("FORMAT") not in FORMATS:
        return "unsupported FORMAT", "InvalidFormat"
    width, height = int(params["WIDTH"]), int(params["HEIGHT"])
    if width > max_size[0] or height > max_size[1]:
        message = (
            f"Image size {width}x{height} exceeds MaxWidth={max_size[0]} MaxHeight={max_size[1]}"
        )
        return message, ""
    return None


def getmap(
    renderer: GroundTruthRenderer,
    params: dict[str, str],
    versions: Sequence[str],
    max_size: tuple[int, int],
) -> web.Response:
    """Render a GetMap, reading BBOX in the axis order of its version and CRS."""
    version = params.get("VERSION", "")
    if version not in versions:
        return service_exception(f"unsupported VERSION {version!r}", max(versions))
    refusal = getmap_refusal(params, versions, max_size)
    if refusal is not None:
        return service_exception(refusal[0], version, refusal[1])
    code = params["CRS" if version == "1.3.0" else "SRS"]
    a, b, c, d = (float(v) for v in params["BBOX"].split(","))
    bbox = (b, a, d, c) if version == "1.3.0" and code == "EPSG:4326" else (a, b, c, d)
    crs = CRS.from_user_input("OGC:CRS84" if code == "CRS:84" else code)
    width, height = int(params["WIDTH"]), int(params["HEIGHT"])
    data = renderer.bbox(bbox, crs, width, height, FORMATS[params["FORMAT"]])
    return web.Response(body=data, content_type=params["FORMAT"])


def wms_app(
    renderer: GroundTruthRenderer,
    *,
    versions: Sequence[str] = ("1.1.1", "1.3.0"),
    max_size: tuple[int, int] = (200, 150),
    require_map: str | None = None,
) -> web.Application:
    """Routes:

    - ``/wms``: GetCapabilities (and GetMap); its OnlineResource points at ``/ows``
    - ``/ows``: GetMap (and GetCapabilities)
    - ``/evil/lol``, ``/evil/xxe``: capabilities with entity attacks

    ``require_map``: every request must carry ``MAP=<value>`` (a MapServer mapfile).
    A parameter repeated in any case is refused. ``app[REQUESTS]`` records every request.
    """
    app = web.Application()
    app[REQUESTS] = []

    async def handle(request: web.Request) -> web.Response:
        pairs = list(request.query.items())
        keys = [k.upper() for k, _ in pairs]
        params = {k.upper(): v for k, v in pairs}
        app[REQUESTS].append({"PATH": request.path, **params})
        version = negotiate(params.get("VERSION"), versions)
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            return service_exception(f"repeated parameters {repeated}", version)
        if require_map and params.get("MAP") != require_map:
            return service_exception("msLoadMap(): no mapfile given", version)
        if params.get("SERVICE", "").upper() != "WMS":
            return service_exception("SERVICE=WMS is missing", version)
        kind = params.get("REQUEST", "").lower()
        if kind == "getcapabilities":
            # No MAP in the OnlineResource: the client must carry its own params over.
            online = str(request.url.origin()) + "/ows?"
            return web.Response(
                text=capabilities(version, online, max_size),
                content_type="text/xml" if version == "1.3.0" else "application/vnd.ogc.wms_xml",
            )
        if kind == "getmap":
            return getmap(renderer, params, versions, max_size)
        return service_exception(f"unknown request {kind!r}", version, "OperationNotSupported")

    async def lol(request: web.Request) -> web.Response:
        return web.Response(body=BILLION_LAUGHS, content_type="text/xml")

    async def xxe(request: web.Request) -> web.Response:
        return web.Response(body=XXE, content_type="text/xml")

    app.router.add_get("/wms", handle)
    app.router.add_get("/ows", handle)
    app.router.add_get("/evil/lol", lol)
    app.router.add_get("/evil/xxe", xxe)
    return app
