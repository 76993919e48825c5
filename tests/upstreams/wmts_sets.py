"""A fake WMTS with the tile matrix sets real servers get wrong, cut from the ground truth.

Each set is defined here as a morecantile set written by hand (the oracle), with its
TopLeftCorner written in the CRS's own axis order:

- ``LV03``: Swiss EPSG:21781, whose easting is abbreviated "Y" and comes first;
- ``PL92``: EPSG:2180 (Poland CS92, ETRS89: no datum shift to argue about, far out of
  its zone but valid), whose northing is abbreviated "x" and comes first: the corner
  is written "northing easting";
- ``GoogleMapsCompatible``: Web Mercator, ids "0".."16";
- ``Dupes``: Web Mercator 0..16 with matrix "5" declared twice.

Layers: ``swiss`` (LV03), ``poland`` (PL92), ``prefixed`` (TileMatrixSetLimits naming
matrices "EPSG:3857:10".. for matrices "10"..), ``unmatched`` (limits naming no matrix),
``dupes``. ``/utf16/WMTSCapabilities.xml`` sends the capabilities as UTF-16 with a BOM
and a declaration still saying UTF-8, as some servers do.
"""

from __future__ import annotations

import codecs
import math

import morecantile
import rasterio
from aiohttp import web
from morecantile import TileMatrixSet
from rasterio.warp import transform_bounds

from tests.upstreams.render import MEDIA, GroundTruthRenderer

HITS = web.AppKey("hits", list)  # (set, matrix id, row, col) per tile request
GOOGLE = morecantile.tms.get("WebMercatorQuad")
OGC_PIXEL = 0.00028


def projected_set(
    ident: str, epsg: int, origin_en: tuple[float, float], extent: float, resolutions: list[float]
) -> TileMatrixSet:
    """A top-left set in EPSG ``epsg``; ``origin_en`` is (easting, northing)."""
    north_first = epsg == 2180
    matrices = []
    for z, res in enumerate(resolutions):
        size = math.ceil(extent / (res * 256))
        east, north = origin_en
        matrices.append(
            {
                "id": str(z),
                "scaleDenominator": res / OGC_PIXEL,
                "cellSize": res,
                "pointOfOrigin": (north, east) if north_first else (east, north),
                "tileWidth": 256,
                "tileHeight": 256,
                "matrixWidth": size,
                "matrixHeight": size,
            }
        )
    return TileMatrixSet(
        id=ident,
        crs=f"http://www.opengis.net/def/crs/EPSG/0/{epsg}",
        orderedAxes=["N", "E"] if north_first else ["E", "N"],
        tileMatrices=matrices,
    )


LV03 = projected_set(
    "LV03",
    21781,
    (420000.0, 350000.0),
    480000.0,
    [4000, 1000, 250, 100, 50, 20, 10, 5, 2.5, 2] + [1.5, 1, 0.5],
)
PL92 = projected_set(
    "PL92", 2180, (-500000.0, -20000.0), 100000.0, [200, 100, 50, 20, 10, 5, 2.5, 1, 0.5]
)
# identifier -> (morecantile set, SupportedCRS, matrix ids in document order)
SETS: dict[str, tuple[TileMatrixSet, str, list[str]]] = {
    "LV03": (LV03, "urn:ogc:def:crs:EPSG::21781", [str(z) for z in range(13)]),
    "PL92": (PL92, "urn:ogc:def:crs:EPSG::2180", [str(z) for z in range(9)]),
    "GoogleMapsCompatible": (GOOGLE, "urn:ogc:def:crs:EPSG::3857", [str(z) for z in range(17)]),
    "Dupes": (GOOGLE, "urn:ogc:def:crs:EPSG::3857", [str(z) for z in range(17)] + ["5"]),
}
# layer -> (set, pattern of the TileMatrix names in its limits, or None for no limits)
LAYERS: dict[str, tuple[str, str | None]] = {
    "swiss": ("LV03", None),
    "poland": ("PL92", None),
    "prefixed": ("GoogleMapsCompatible", "EPSG:3857:{z}"),
    "unmatched": ("GoogleMapsCompatible", "L{z}"),
    "dupes": ("Dupes", None),
}
LIMITED_ZOOMS = range(10, 17)


def matrix_xml(tms: TileMatrixSet, z: int, ident: str) -> str:
    m = tms.matrix(z)
    a, b = m.pointOfOrigin  # the CRS's own axis order
    return (
        f"<TileMatrix><ows:Identifier>{ident}</ows:Identifier>"
        f"<ScaleDenominator>{m.scaleDenominator!r}</ScaleDenominator>"
        f"<TopLeftCorner>{a!r} {b!r}</TopLeftCorner>"
        f"<TileWidth>256</TileWidth><TileHeight>256</TileHeight>"
        f"<MatrixWidth>{m.matrixWidth}</MatrixWidth><MatrixHeight>{m.matrixHeight}</MatrixHeight>"
        "</TileMatrix>"
    )


def set_xml(ident: str) -> str:
    tms, crs, ids = SETS[ident]
    matrices = "".join(matrix_xml(tms, int(mid), mid) for mid in ids)
    return (
        f"<TileMatrixSet><ows:Identifier>{ident}</ows:Identifier>"
        f"<ows:SupportedCRS>{crs}</ows:SupportedCRS>{matrices}</TileMatrixSet>"
    )


def limits_xml(pattern: str, bounds: tuple[float, float, float, float]) -> str:
    rows = []
    for z in LIMITED_ZOOMS:
        tiles = list(GOOGLE.tiles(*bounds, zooms=[z]))
        xs, ys = [t.x for t in tiles], [t.y for t in tiles]
        rows.append(
            f"<TileMatrixLimits><TileMatrix>{pattern.format(z=z)}</TileMatrix>"
            f"<MinTileRow>{min(ys)}</MinTileRow><MaxTileRow>{max(ys)}</MaxTileRow>"
            f"<MinTileCol>{min(xs)}</MinTileCol><MaxTileCol>{max(xs)}</MaxTileCol>"
            "</TileMatrixLimits>"
        )
    return f"<TileMatrixSetLimits>{''.join(rows)}</TileMatrixSetLimits>"


def layer_xml(name: str, base: str, bounds: tuple[float, float, float, float]) -> str:
    ident, pattern = LAYERS[name]
    limits = limits_xml(pattern, bounds) if pattern else ""
    west, south, east, north = bounds
    return (
        f"<Layer><ows:Title>{name}</ows:Title><ows:Identifier>{name}</ows:Identifier>"
        f"<ows:WGS84BoundingBox><ows:LowerCorner>{west} {south}</ows:LowerCorner>"
        f"<ows:UpperCorner>{east} {north}</ows:UpperCorner></ows:WGS84BoundingBox>"
        '<Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>'
        "<Format>image/png</Format>"
        f"<TileMatrixSetLink><TileMatrixSet>{ident}</TileMatrixSet>{limits}</TileMatrixSetLink>"
        f'<ResourceURL format="image/png" resourceType="tile" template="{base}/tiles/{name}/'
        '{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.png"/></Layer>'
    )


def capabilities(base: str, bounds: tuple[float, float, float, float]) -> str:
    layers = "".join(layer_xml(name, base, bounds) for name in LAYERS)
    sets = "".join(set_xml(ident) for ident in SETS)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Capabilities xmlns="http://www.opengis.net/wmts/1.0" '
        'xmlns:ows="http://www.opengis.net/ows/1.1" version="1.0.0">'
        "<ows:ServiceIdentification><ows:Title>sets</ows:Title>"
        "<ows:ServiceType>OGC WMTS</ows:ServiceType>"
        "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion></ows:ServiceIdentification>"
        f"<Contents>{layers}{sets}</Contents></Capabilities>"
    )


def wmts_sets_app(renderer: GroundTruthRenderer) -> web.Application:
    """Routes: ``/WMTSCapabilities.xml``, ``/utf16/WMTSCapabilities.xml`` and
    ``/tiles/{layer}/{set}/{matrix}/{row}/{col}.png`` (``app[HITS]`` records each)."""
    app = web.Application()
    app[HITS] = []
    with rasterio.open(renderer.path) as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)

    async def caps(request: web.Request) -> web.Response:
        return web.Response(
            text=capabilities(f"http://{request.host}", bounds), content_type="application/xml"
        )

    async def caps_utf16(request: web.Request) -> web.Response:
        body = codecs.BOM_UTF16_LE + capabilities(f"http://{request.host}", bounds).encode(
            "utf-16-le"
        )
        return web.Response(body=body, content_type="application/xml")

    async def tile(request: web.Request) -> web.Response:
        m = request.match_info
        layer, ident, matrix = m["layer"], m["set"], m["matrix"]
        if layer not in LAYERS or LAYERS[layer][0] != ident or matrix not in SETS[ident][2]:
            raise web.HTTPBadRequest(text=f"bad {layer}/{ident}/{matrix}")
        row, col = int(m["row"]), int(m["col"])
        app[HITS].append((ident, matrix, row, col))
        data = renderer.tile(SETS[ident][0], col, row, int(matrix), 256, "png")
        if data is None:
            raise web.HTTPNotFound(text="no tile")
        return web.Response(body=data, content_type=MEDIA["png"])

    app.router.add_get("/WMTSCapabilities.xml", caps)
    app.router.add_get("/utf16/WMTSCapabilities.xml", caps_utf16)
    app.router.add_get("/tiles/{layer}/{set}/{matrix}/{row}/{col}.png", tile)
    return app
