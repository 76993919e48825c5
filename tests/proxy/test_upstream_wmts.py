"""The WMTS adapter against a real loopback WMTS serving the ground truth."""

from __future__ import annotations

import math

import pytest

from proxy.errors import InvalidInput
from proxy.schemas import XYZConfig
from proxy.upstream.registry import parse_config
from proxy.upstream.wmts import (
    capabilities_params,
    describe_wmts,
    open_wmts,
)
from proxy.upstream.wmts_capabilities import (
    Matrix,
    MatrixSet,
    parse_capabilities,
    quad_zooms,
    tile_matrix_set,
)
from proxy.upstream.wmts_to_xyz import without_params, wmts_to_xyz
from proxy.upstream.xyz import XYZSource
from streaming.errors import SourceServiceException, SourceUnsupported
from streaming.grid import mercator_resolution, tile_transform
from streaming.reader import SourceReader, preview_grid
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.wmts import GEO, GOOGLE, HITS, TIME, capabilities, wmts_app

REST_CAPS = "/wmts/1.0.0/WMTSCapabilities.xml"
BOUNDS = (6.5, 46.4, 6.8, 46.6)


def wmts(url, **extra):
    return parse_config({"type": "wmts", "name": "w", "url": url, **extra})


async def start(serve, renderer, rest=True):
    app = wmts_app(renderer, rest=rest)
    base = await serve(app)
    return app, base, base + (REST_CAPS if rest else "/wmts")


def test_tile_matrix_sets_match_morecantile():
    caps = parse_capabilities(capabilities("http://h", BOUNDS, True).encode())
    geo = tile_matrix_set(caps.matrix_sets["WGS84LatLon"])
    assert caps.matrix_sets["WGS84LatLon"].matrix_ids[:2] == ("EPSG:4326:0", "EPSG:4326:1")
    assert geo._invert_axis and geo.matrix(0).pointOfOrigin == (90, -180)
    google = tile_matrix_set(caps.matrix_sets["GoogleMapsCompatible"])
    gwc = tile_matrix_set(caps.matrix_sets["EPSG:900913"])
    assert gwc.rasterio_crs.to_epsg() == 3857
    for ours, theirs, z, x, y in [(geo, GEO, 13, 8342, 1907), (google, GOOGLE, 14, 8493, 5807)]:
        assert ours.matrix(z).cellSize == pytest.approx(theirs.matrix(z).cellSize, rel=1e-9)
        transform = tile_transform(ours, TileIndex(x, y, z))
        left, bottom, right, top = theirs.xy_bounds(x, y, z)
        assert (transform.c, transform.f) == pytest.approx((left, top), abs=1e-6 * (right - left))
    assert quad_zooms(caps.matrix_sets["EPSG:900913"]) == list(range(17))
    assert quad_zooms(caps.matrix_sets["WGS84LatLon"]) is None


def one_matrix_set(crs, corner, scale=559082264.0287178, size=1):
    matrix = Matrix("m", scale, corner, 256, 256, size, size)
    return tile_matrix_set(MatrixSet("s", crs, (matrix,)))


@pytest.mark.parametrize(
    ("crs", "corner", "origin", "inverted", "epsg"),
    [
        ("EPSG:3857", (-20037508.3428, 20037508.3428), (-20037508.3428, 20037508.3428), 0, 3857),
        ("urn:ogc:def:crs:EPSG::3857", (-2.003750834e7, 2.003750834e7), None, 0, 3857),
        ("urn:ogc:def:crs:EPSG:6.18:3:3857", (-2.003750834e7, 2.003750834e7), None, 0, 3857),
        ("urn:ogc:def:crs:EPSG::900913", (-2.003750834e7, 2.003750834e7), None, 0, 3857),
        ("urn:ogc:def:crs:OGC:1.3:CRS84", (-180, 90), (-180, 90), 0, None),
        ("urn:ogc:def:crs:EPSG::4326", (90, -180), (90, -180), 1, 4326),
        ("urn:ogc:def:crs:EPSG::4326", (-180, 90), (90, -180), 1, 4326),  # lon,lat written
    ],
)
def test_crs_and_corner_variants(crs, corner, origin, inverted, epsg):
    tms = one_matrix_set(crs, corner)
    assert tms._invert_axis == bool(inverted)
    assert tms.matrix(0).pointOfOrigin == pytest.approx(origin or corner)
    assert tms.rasterio_crs.to_epsg() == epsg
    degrees = tms.rasterio_crs.is_geographic
    expected_size = 156543.03392804097 / (2 * math.pi * 6378137 / 360 if degrees else 1)
    assert tms.matrix(0).cellSize == pytest.approx(expected_size, rel=1e-9)


def test_capabilities_params():
    assert capabilities_params("http://h/wmts/1.0.0/WMTSCapabilities.xml") == {}
    assert capabilities_params("http://h/wmts?service=WMTS&request=GetCapabilities") == {}
    assert capabilities_params("http://h/wmts?SERVICE=WMTS&map=x") == {
        "REQUEST": "GetCapabilities",
        "VERSION": "1.0.0",
    }


def test_secret_params_are_kept_out_of_xyz_templates():
    # Servers often echo the capabilities' API key into their ResourceURLs.
    assert (
        without_params("http://h/{z}/{x}/{y}.png?key=s3cret", ["key"]) == "http://h/{z}/{x}/{y}.png"
    )
    url = "http://h/wmts?key=s3cret&LAYER=a&TILEMATRIX={z}&token=t"
    assert without_params(url, ["key", "token"]) == "http://h/wmts?LAYER=a&TILEMATRIX={z}"


@pytest.mark.parametrize(
    ("layer", "rest", "fmt"),
    [
        ("lausanne", True, None),
        ("lausanne", False, None),
        ("lausanne", True, "image/jpeg"),
        ("lausanne_gwc", True, None),
    ],
    ids=["rest", "kvp", "rest-jpeg", "gwc-ids"],
)
async def test_web_mercator_set_pixels(
    serve, renderer, ground_truth, upstream_ctx, layer, rest, fmt
):
    app, _, url = await start(serve, renderer, rest)
    source = await open_wmts(wmts(url, layer=layer, format=fmt), upstream_ctx)
    assert quad_zooms(source.plan.matrix_set) is not None
    assert (source.min_zoom, source.max_zoom) == (0, 16)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    kinds = {(kind, matrix) for kind, _, _, matrix in app[HITS]}
    assert kinds == {("rest" if rest else "kvp", "14" if layer == "lausanne" else "EPSG:900913:14")}


@pytest.mark.parametrize("rest", [True, False], ids=["rest", "kvp"])
async def test_geographic_lat_lon_set_pixels(serve, renderer, ground_truth, upstream_ctx, rest):
    app, _, url = await start(serve, renderer, rest)
    config = wmts(url, layer="lausanne", tile_matrix_set="WGS84LatLon")
    source = await open_wmts(config, upstream_ctx)
    assert source.tms._invert_axis
    assert (source.min_zoom, source.max_zoom) == (2, 15)  # from TileMatrixSetLimits
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 13
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=12)
    assert {(kind, m) for kind, _, _, m in app[HITS]} == {
        ("rest" if rest else "kvp", "EPSG:4326:13")
    }


async def test_tiles_outside_the_limits_are_not_requested(serve, renderer, upstream_ctx):
    app, _, url = await start(serve, renderer)
    source = await open_wmts(wmts(url, tile_matrix_set="WGS84LatLon"), upstream_ctx)
    assert await source.fetch_tile(TileIndex(0, 0, 5)) is None
    assert await source.fetch_tile(TileIndex(0, 0, 1)) is None  # matrix not in the limits
    assert app[HITS] == []


async def test_defaults_and_describe(serve, renderer, upstream_ctx):
    _, _, url = await start(serve, renderer)
    source = await open_wmts(wmts(url), upstream_ctx)
    plan = source.plan
    assert (plan.layer.identifier, plan.matrix_set.identifier) == (
        "lausanne",
        "GoogleMapsCompatible",
    )
    assert (plan.style, plan.format) == ("default", "image/png")
    summary = await describe_wmts(wmts(url), upstream_ctx)
    lausanne = summary["layers"][0]
    assert [layer["id"] for layer in summary["layers"]] == [
        "lausanne",
        "lausanne_geo",
        "lausanne_gwc",
        "faulty",
    ]
    assert lausanne["styles"] == ["default", "alt"]
    assert lausanne["formats"] == ["image/png", "image/jpeg"]
    assert lausanne["tile_matrix_sets"] == ["GoogleMapsCompatible", "WGS84LatLon"]
    assert lausanne["encodings"] == ["rest", "kvp"]
    assert lausanne["dimensions"] == {"Time": TIME}
    west, south, east, north = lausanne["bounds"]
    assert west < CENTER_LON < east and south < CENTER_LAT < north
    quads = {s["id"]: s["web_mercator_quad"] for s in summary["tile_matrix_sets"]}
    assert quads == {"GoogleMapsCompatible": True, "WGS84LatLon": False, "EPSG:900913": True}


@pytest.mark.parametrize("rest", [True, False], ids=["rest", "kvp"])
async def test_wmts_to_xyz(serve, renderer, ground_truth, upstream_ctx, rest):
    app, base, url = await start(serve, renderer, rest)
    config = wmts(url, layer="lausanne", headers={"X-Key": "k"}, params={"key": "v"})
    xyz = await wmts_to_xyz(config, upstream_ctx)
    parsed = parse_config(xyz)
    assert isinstance(parsed, XYZConfig)
    if rest:
        path = f"/rest/lausanne/default/{TIME}/GoogleMapsCompatible/{{z}}/{{y}}/{{x}}.png"
        assert parsed.url == base + path
    else:
        assert parsed.url.startswith(base + "/wmts?SERVICE=WMTS&REQUEST=GetTile")
        assert parsed.url.endswith("TILEMATRIX={z}&TILEROW={y}&TILECOL={x}")
    assert (parsed.min_zoom, parsed.max_zoom, parsed.tile_size) == (0, 16, 256)
    assert (parsed.headers, parsed.params) == ({"X-Key": "k"}, {"key": "v"})
    assert parsed.preview is not None
    assert (
        abs(parsed.preview.lat - CENTER_LAT) < 0.05 and abs(parsed.preview.lon - CENTER_LON) < 0.05
    )
    lat = parsed.preview.lat
    assert parsed.resolution == pytest.approx(mercator_resolution(16) * math.cos(math.radians(lat)))
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(XYZSource(parsed, upstream_ctx), upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    assert {kind for kind, *_ in app[HITS]} == {"rest" if rest else "kvp"}


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"layer": "lausanne_geo"}, "no Web Mercator quad"),
        ({"layer": "lausanne", "tile_matrix_set": "WGS84LatLon"}, "not a Web Mercator quad"),
        ({"layer": "lausanne_gwc"}, "not zoom numbers .*'EPSG:900913:0' is zoom 0"),
    ],
    ids=["geographic-only", "geographic-asked", "gwc-ids"],
)
async def test_wmts_to_xyz_refuses(serve, renderer, upstream_ctx, extra, match):
    _, _, url = await start(serve, renderer)
    with pytest.raises(SourceUnsupported, match=match):
        await wmts_to_xyz(wmts(url, **extra), upstream_ctx)


@pytest.mark.parametrize(
    ("extra", "match", "hint"),
    [
        ({"layer": "nope"}, "no layer 'nope'", "lausanne, lausanne_geo"),
        ({"tile_matrix_set": "WebMercatorQuad"}, "no tile matrix set", "GoogleMapsCompatible"),
        ({"style": "fancy"}, "no style 'fancy'", "default, alt"),
        ({"format": "image/webp"}, "not offered", "image/png"),
        ({"max_zoom": 17}, "outside tile matrix set", None),
    ],
    ids=["layer", "tms", "style", "format", "zoom"],
)
async def test_invalid_choices(serve, renderer, upstream_ctx, extra, match, hint):
    _, _, url = await start(serve, renderer)
    with pytest.raises(InvalidInput, match=match) as info:
        await open_wmts(wmts(url, **extra), upstream_ctx)
    assert info.value.code == "invalid_input"
    if hint:
        assert hint in (info.value.hint or "")


@pytest.mark.parametrize("rest", [True, False], ids=["rest", "kvp"])
async def test_exception_report_with_http_200_is_an_error(serve, renderer, upstream_ctx, rest):
    _, _, url = await start(serve, renderer, rest)
    source = await open_wmts(wmts(url, layer="faulty"), upstream_ctx)
    with pytest.raises(SourceServiceException, match="backend down"):
        await source.fetch_tile(TileIndex(*GOOGLE.tile(CENTER_LON, CENTER_LAT, 14)))
