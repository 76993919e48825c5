"""A fake WMTS on loopback: capabilities, REST and KVP GetTile, cut from the ground truth.

Tile matrix sets (written from morecantile's own definitions, independently of the adapter):

- ``GoogleMapsCompatible``: EPSG:3857 (``urn:ogc:def:crs:EPSG::3857``), 256 px, ids "0".."16";
- ``WGS84LatLon``: ``urn:ogc:def:crs:EPSG::4326`` like WGS1984Quad, TopLeftCorner in lat,lon
  order ("90 -180"), ids "EPSG:4326:0".."EPSG:4326:15", listed fine to coarse;
- ``EPSG:900913``: Web Mercator again, GeoWebCache-style ids "EPSG:900913:0"...;
- the hand-written shapes of :mod:`tests.upstreams.tms_shapes`: ``SwissLV95`` (EPSG:2056,
  with TileMatrixSetLimits) and ``MercatorInset`` in the capabilities, ``MercatorBL`` and
  ``SwissBL`` (bottom-left origin) served by tile path only.

Layers: ``lausanne`` (both first sets, a ``Time`` dimension, TileMatrixSetLimits on the
geographic set, styles ``default`` and ``alt``, PNG and JPEG), ``lausanne_geo`` (geographic
only), ``lausanne_gwc`` (EPSG:900913 only) and ``faulty`` (every tile is an ExceptionReport
sent with HTTP 200), and ``lausanne_shapes`` (the hand-written shapes).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import morecantile
import rasterio
from aiohttp import web
from morecantile import TileMatrixSet
from rasterio.warp import transform_bounds

from tests.upstreams.render import MEDIA, GroundTruthRenderer
from tests.upstreams.tms_shapes import MERCATOR_BL, MERCATOR_INSET, SWISS, SWISS_BL

HITS = web.AppKey("hits", list)
TILES = web.AppKey("tiles", list)
TIME = "2024-06-01"
STYLES = ("default", "alt")
FORMATS = ("image/png", "image/jpeg")
GOOGLE = morecantile.tms.get("WebMercatorQuad")
GEO = morecantile.tms.get("WGS1984Quad")

# identifier -> (morecantile set, SupportedCRS, matrix id of zoom z, zooms declared, reversed)
SETS: dict[str, tuple[TileMatrixSet, str, str, range, bool]] = {
    "GoogleMapsCompatible": (GOOGLE, "urn:ogc:def:crs:EPSG::3857", "{z}", range(17), False),
    "WGS84LatLon": (GEO, "urn:ogc:def:crs:EPSG::4326", "EPSG:4326:{z}", range(16), True),
    "EPSG:900913": (GOOGLE, "urn:ogc:def:crs:EPSG::900913", "EPSG:900913:{z}", range(17), False),
    **{
        shape.ident: (shape.tms(), f"urn:ogc:def:crs:EPSG::{shape.epsg}", "{z}", zooms, False)
        for shape in (SWISS, MERCATOR_INSET, MERCATOR_BL, SWISS_BL)
        for zooms in [range(len(shape.matrices))]
    },
}
LAYERS = {
    "lausanne": ["GoogleMapsCompatible", "WGS84LatLon"],
    "lausanne_geo": ["WGS84LatLon"],
    "lausanne_gwc": ["EPSG:900913"],
    "faulty": ["GoogleMapsCompatible"],
    "lausanne_shapes": ["SwissLV95", "MercatorInset"],
}
# Sets WMTS 1.0.0 cannot describe (bottom-left origin): tiles only, never in the capabilities.
UNLISTED = {"lausanne_shapes": [MERCATOR_BL.ident, SWISS_BL.ident]}
LIMITED = {"WGS84LatLon": range(2, 16), "SwissLV95": range(7)}  # in TileMatrixSetLimits


def exception_report(text: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1" version="1.1.0">'
        f'<ows:Exception exceptionCode="NoApplicableCode"><ows:ExceptionText>{escape(text)}'
        "</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"
    )


def matrix_xml(tms: TileMatrixSet, z: int, ident: str) -> str:
    m = tms.matrix(z)
    a, b = m.pointOfOrigin  # CRS axis order, as WMTS TopLeftCorner wants
    return (
        f"<TileMatrix><ows:Identifier>{ident}</ows:Identifier>"
        f"<ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>"
        f"<TopLeftCorner>{a!r} {b!r}</TopLeftCorner>"
        f"<TileWidth>{m.tileWidth}</TileWidth><TileHeight>{m.tileHeight}</TileHeight>"
        f"<MatrixWidth>{m.matrixWidth}</MatrixWidth><MatrixHeight>{m.matrixHeight}</MatrixHeight>"
        "</TileMatrix>"
    )


def set_xml(ident: str) -> str:
    tms, crs, pattern, zooms, reverse = SETS[ident]
    order = reversed(zooms) if reverse else zooms
    matrices = "".join(matrix_xml(tms, z, pattern.format(z=z)) for z in order)
    return (
        f"<TileMatrixSet><ows:Identifier>{ident}</ows:Identifier>"
        f"<ows:SupportedCRS>{crs}</ows:SupportedCRS>{matrices}</TileMatrixSet>"
    )


def limits_xml(ident: str, bounds: tuple[float, float, float, float]) -> str:
    tms, _, pattern, _, _ = SETS[ident]
    rows = []
    for z in LIMITED[ident]:
        tiles = list(tms.tiles(*bounds, zooms=[z]))
        xs, ys = [t.x for t in tiles], [t.y for t in tiles]
        rows.append(
            f"<TileMatrixLimits><TileMatrix>{pattern.format(z=z)}</TileMatrix>"
            f"<MinTileRow>{min(ys)}</MinTileRow><MaxTileRow>{max(ys)}</MaxTileRow>"
            f"<MinTileCol>{min(xs)}</MinTileCol><MaxTileCol>{max(xs)}</MaxTileCol>"
            "</TileMatrixLimits>"
        )
    return f"<TileMatrixSetLimits>{''.join(rows)}</TileMatrixSetLimits>"


def layer_xml(name: str, base: str, bounds: tuple[float, float, float, float], rest: bool) -> str:
    styles = "".join(
        f'<Style isDefault="{str(s == "default").lower()}"><ows:Identifier>{s}</ows:Identifier>'
        "</Style>"
        for s in STYLES
    )
    links = "".join(
        f"<TileMatrixSetLink><TileMatrixSet>{s}</TileMatrixSet>"
        f"{limits_xml(s, bounds) if s in LIMITED else ''}</TileMatrixSetLink>"
        for s in LAYERS[name]
    )
    urls = "".join(
        f'<ResourceURL format="{fmt}" resourceType="tile" template="{base}/rest/{name}/'
        f'{{Style}}/{{Time}}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.{ext}"/>'
        for fmt, ext in (("image/png", "png"), ("image/jpeg", "jpg"))
        if rest
    )
    west, south, east, north = bounds
    return (
        f"<Layer><ows:Title>{name} title</ows:Title><ows:Identifier>{name}</ows:Identifier>"
        f"<ows:WGS84BoundingBox><ows:LowerCorner>{west} {south}</ows:LowerCorner>"
        f"<ows:UpperCorner>{east} {north}</ows:UpperCorner></ows:WGS84BoundingBox>"
        f"{styles}{''.join(f'<Format>{f}</Format>' for f in FORMATS)}"
        "<Dimension><ows:Identifier>Time</ows:Identifier>"
        f"<Default>{TIME}</Default><Value>{TIME}</Value></Dimension>"
        f"{links}{urls}</Layer>"
    )


def capabilities(
    base: str, bounds: tuple[float, float, float, float], rest: bool, shapes: bool = False
) -> str:
    """The capabilities document; the ``lausanne_shapes`` layer and its sets if ``shapes``."""
    names = [name for name in LAYERS if shapes or name != "lausanne_shapes"]
    layers = "".join(layer_xml(name, base, bounds, rest) for name in names)
    linked = {ident for name in names for ident in LAYERS[name]}
    sets = "".join(set_xml(ident) for ident in SETS if ident in linked)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'version="1.0.0"><ows:ServiceIdentification><ows:Title>fake</ows:Title>'
        "<ows:ServiceType>OGC WMTS</ows:ServiceType>"
        "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion></ows:ServiceIdentification>"
        '<ows:OperationsMetadata><ows:Operation name="GetTile"><ows:DCP><ows:HTTP>'
        f'<ows:Get xlink:href="{base}/wmts?"><ows:Constraint name="GetEncoding">'
        "<ows:AllowedValues><ows:Value>KVP</ows:Value></ows:AllowedValues></ows:Constraint>"
        "</ows:Get></ows:HTTP></ows:DCP></ows:Operation></ows:OperationsMetadata>"
        f"<Contents>{layers}{sets}</Contents></Capabilities>"
    )


def render_tile(renderer: GroundTruthRenderer, args: list[str]) -> web.Response:
    """Answer a tile request for (layer, style, set, matrix, row, col, ext)."""
    layer, style, ident, matrix, row, col, ext = args
    if layer == "faulty":  # misconfigured servers answer errors with HTTP 200
        text = exception_report("layer faulty: backend down")
        return web.Response(text=text, content_type="application/xml")
    linked = LAYERS.get(layer, []) + UNLISTED.get(layer, [])
    if ident not in linked or style not in STYLES:
        raise web.HTTPBadRequest(text=exception_report(f"bad {layer}/{style}/{ident}"))
    tms, _, pattern, zooms, _ = SETS[ident]
    by_id = {pattern.format(z=z): z for z in zooms}
    if matrix not in by_id:
        raise web.HTTPBadRequest(text=exception_report(f"no TileMatrix {matrix}"))
    data = renderer.tile(tms, int(col), int(row), by_id[matrix], 256, ext)
    if data is None:
        raise web.HTTPNotFound(text="no tile")
    return web.Response(body=data, content_type=MEDIA[ext])


def tile_hit(args: list[str]) -> tuple[str, str, int | str, int | str]:
    """(set, matrix, col, row) of a tile request; indices as ints when they are numbers."""
    col, row = (int(v) if v.lstrip("-").isdigit() else v for v in (args[5], args[4]))
    return args[2], args[3], col, row


def kvp_tile_args(query: dict[str, str]) -> list[str]:
    """The GetTile KVP params as :func:`render_tile` args; a 400 for a bad request."""
    ext = {"image/png": "png", "image/jpeg": "jpg"}.get(query.get("FORMAT", ""))
    if query.get("REQUEST") != "GetTile" or query.get("TIME", TIME) != TIME or not ext:
        raise web.HTTPBadRequest(text=exception_report("bad GetTile request"))
    keys = ("LAYER", "STYLE", "TILEMATRIXSET", "TILEMATRIX", "TILEROW", "TILECOL")
    return [query.get(k, "") for k in keys] + [ext]


def wmts_app(
    renderer: GroundTruthRenderer, *, rest: bool = True, shapes: bool = False
) -> web.Application:
    """Routes:

    - ``/wmts/1.0.0/WMTSCapabilities.xml``: the capabilities (REST style)
    - ``/wmts?SERVICE=WMTS&REQUEST=GetCapabilities|GetTile&...``: KVP
    - ``/rest/{layer}/{style}/{time}/{set}/{matrix}/{row}/{col}.{png|jpg}``: REST tiles

    With ``rest=False`` the capabilities have no ResourceURL (a KVP-only server); with
    ``shapes=True`` they list ``lausanne_shapes`` (tiles are served either way).
    ``app[HITS]`` records ("rest"|"kvp", layer, set, matrix) per tile request, and
    ``app[TILES]`` (set, matrix, col, row) with the indices as the server read them.
    """
    app = web.Application()
    app[HITS] = []
    app[TILES] = []
    with rasterio.open(renderer.path) as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)

    async def caps_xml(request: web.Request) -> web.Response:
        body = capabilities(f"http://{request.host}", bounds, rest, shapes)
        return web.Response(text=body, content_type="application/xml")

    async def kvp(request: web.Request) -> web.Response:
        query = {k.upper(): v for k, v in request.query.items()}
        if query.get("SERVICE") != "WMTS":
            raise web.HTTPBadRequest(text=exception_report("SERVICE=WMTS is missing"))
        if query.get("REQUEST") == "GetCapabilities":
            return await caps_xml(request)
        args = kvp_tile_args(query)
        app[HITS].append(("kvp", args[0], args[2], args[3]))
        app[TILES].append(tile_hit(args))
        return render_tile(renderer, args)

    async def rest_tile(request: web.Request) -> web.Response:
        m = request.match_info
        if m["time"] != TIME:
            raise web.HTTPBadRequest(text=exception_report("bad Time"))
        args = [m[k] for k in ("layer", "style", "set", "matrix", "row", "col", "ext")]
        app[HITS].append(("rest", args[0], args[2], args[3]))
        app[TILES].append(tile_hit(args))
        return render_tile(renderer, args)

    app.router.add_get("/wmts/1.0.0/WMTSCapabilities.xml", caps_xml)
    app.router.add_get("/wmts", kvp)
    app.router.add_get("/rest/{layer}/{style}/{time}/{set}/{matrix}/{row}/{col}.{ext}", rest_tile)
    return app
