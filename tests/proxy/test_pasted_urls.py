"""Paste any real URL: template dialects, WMS GetMap URLs and ArcGIS URL forms (issue 14)."""

from __future__ import annotations

import pytest

from proxy.schemas import stored_dict
from proxy.upstream.registry import parse_config
from proxy.upstream.templates import fill, parse
from proxy.upstream.xyz import XYZSource
from streaming.reader import SourceReader, preview_grid
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.arcgis import STATE, arcgis_app
from tests.upstreams.wms import REQUESTS, wms_app
from tests.upstreams.xyz import HITS, KEY, PATHS, xyz_app

H = "http://127.0.0.1:9"


def stored(config: dict) -> dict:
    return stored_dict(parse_config({"name": "t", **config}))


# (pasted, canonical): each pasted form must end in the canonical form's config.
XYZ_DIALECTS = {
    "zoom": ({"url": H + "/a/tiles/{zoom}/{x}/{y}.png"}, {"url": H + "/a/tiles/{z}/{x}/{y}.png"}),
    "upper-case": (
        {"url": H + "/a/tiles/{Z}/{X}/{Y}.png"},
        {"url": H + "/a/tiles/{z}/{x}/{y}.png"},
    ),
    "encoded": (
        {"url": H + "/a/tiles/%7Bzoom%7D/%7Bx%7D/%7By%7D.png"},
        {"url": H + "/a/tiles/{z}/{x}/{y}.png"},
    ),
    "switch": (
        {"url": "http://127.0.0.1:9/{switch:a,b,c}/tiles/{zoom}/{x}/{y}.png"},
        {"url": "http://127.0.0.1:9/{s}/tiles/{z}/{x}/{y}.png", "subdomains": ["a", "b", "c"]},
    ),
    "tms": ({"url": H + "/tms/{zoom}/{x}/{-Y}.png"}, {"url": H + "/tms/{z}/{x}/{-y}.png"}),
    "quadkey": ({"url": H + "/q/{quadkey}.png"}, {"url": H + "/q/{q}.png"}),
    "retina": (
        {"url": H + "/r/{z}/{x}/{y}{R}.png", "tile_size": 512},
        {"url": H + "/r/{z}/{x}/{y}{r}.png", "tile_size": 512},
    ),
    "apiKey": (
        {"url": H + "/key/{z}/{x}/{y}.png?apikey={apiKey}", "keys": {"apiKey": KEY}},
        {"url": H + "/key/{z}/{x}/{y}.png?apikey={apikey}", "keys": {"apikey": KEY}},
    ),
    "zoom-offset": (
        {"url": H + "/shift/{zoom-1}/{x}/{y}.png"},
        {"url": H + "/shift/{z}/{x}/{y}.png", "zoom_offset": -1},
    ),
    "space": (
        {"url": H + "/with space/{z}/{x}/{y}.png"},
        {"url": H + "/with%20space/{z}/{x}/{y}.png"},
    ),
}


@pytest.mark.parametrize("dialect", XYZ_DIALECTS)
def test_each_xyz_dialect_ends_in_its_canonical_config(dialect):
    pasted, canonical = XYZ_DIALECTS[dialect]
    assert stored({"type": "xyz", **pasted}) == stored({"type": "xyz", **canonical})
    # normalizing is idempotent: the stored config validates to itself
    again = stored(stored({"type": "xyz", **pasted}))
    assert again == stored({"type": "xyz", **canonical})


@pytest.mark.parametrize("dialect", XYZ_DIALECTS)
async def test_each_xyz_dialect_lands_pixels_without_placeholders(
    dialect, serve, renderer, ground_truth, upstream_ctx
):
    pasted, _ = XYZ_DIALECTS[dialect]
    tile_size = pasted.get("tile_size", 256)
    app = xyz_app(renderer, tile_size=tile_size)
    base = await serve(app)
    config = parse_config(
        {"type": "xyz", "name": "t", **pasted, "url": pasted["url"].replace(H, base)}
    )
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(XYZSource(config, upstream_ctx), upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    assert app[PATHS]
    for path in app[PATHS]:
        assert "{" not in path and "%7b" not in path.lower() and " " not in path, path
    if dialect == "retina":
        assert {suffix for kind, suffix in app[HITS] if kind == "r"} == {True}


def test_retina_suffix_is_empty_for_256_px_tiles():
    tokens = parse("http://h/{z}/{x}/{y}{r}.png")
    assert fill(tokens, TileIndex(1, 2, 3), tile_size=256) == "http://h/3/1/2.png"
    assert fill(tokens, TileIndex(1, 2, 3), tile_size=512) == "http://h/3/1/2@2x.png"


def test_zoom_offset_changes_only_the_level_number():
    config = parse_config(
        {"type": "xyz", "name": "t", "url": H + "/{z}/{x}/{-y}/{q}", "zoom_offset": -1}
    )
    tokens = parse(config.url)
    assert fill(tokens, TileIndex(3, 5, 4), zoom_offset=config.zoom_offset) == H + "/3/3/10/0213"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (H + "/{z}/{x}/{y}.png?apikey={apiKey}", ["{apikey}", "keys"]),
        (H + "/{z}/{x}/{y}.png?access_token={accessToken}", ["{accesstoken}", "keys"]),
        (H + "/{variant}/{z}/{x}/{y}.{ext}", ["{ext}", "{variant}"]),
        (H + "/{z}/{x}/{y}.png?k={subscriptionKey}", ["{subscriptionkey}"]),
    ],
)
async def test_placeholders_without_a_value_are_a_422_naming_them(api, url, named):
    resp = await api.post("/servers", json={"type": "xyz", "name": "t", "url": url})
    assert resp.status == 422
    message = (await resp.json())["error"]["message"]
    for name in named:
        assert name in message


async def test_key_values_are_write_only_and_kept_when_sent_back_masked(api):
    config = {
        "type": "xyz",
        "name": "t",
        "url": H + "/{z}/{x}/{y}?k={apiKey}",
        "keys": {"apiKey": KEY},
    }
    resp = await api.post("/servers", json=config)
    assert resp.status == 201
    created = await resp.json()
    assert created["keys"] == {"apikey": "***"} and KEY not in await resp.text()
    resp = await api.patch(
        f"/servers/{created['id']}", json={"keys": {"apikey": "***"}, "resolution": 2}
    )
    assert resp.status == 200 and KEY not in await resp.text()
    from proxy.keys import SERVICES

    record = await api.app[SERVICES].catalog.servers.get(created["id"])
    assert record.config["keys"] == {"apikey": KEY}


async def test_max_zoom_past_the_grid_is_clamped_with_a_finding(api):
    config = {"type": "xyz", "name": "t", "url": H + "/{z}/{x}/{y}", "max_zoom": 30}
    resp = await api.post("/servers/detect", json=config)
    assert resp.status == 200
    body = await resp.json()
    assert body["config"]["max_zoom"] == 24
    assert "max_zoom_clamped" in [f["code"] for f in body["findings"]]


EDITOR_GETMAP = (
    "/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=world&STYLES=&FORMAT=image/png"
    "&TRANSPARENT=true&CRS={proj}&BBOX={bbox}&WIDTH={width}&HEIGHT={height}&MAP=ortho"
)
CONCRETE_GETMAP = (
    "/wms?service=WMS&version=1.1.1&request=GetMap&layers=world&styles=&format=image%2Fpng"
    "&srs=EPSG:3857&bbox=0,0,1000,1000&width=256&height=256&MAP=ortho"
)


@pytest.mark.parametrize("picked", ["wms", "xyz"])
@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        (EDITOR_GETMAP, {"version": "1.3.0", "layers": ["world"], "format": "image/png"}),
        (
            CONCRETE_GETMAP,
            {"version": "1.1.1", "layers": ["world"], "format": "image/png", "crs": "EPSG:3857"},
        ),
    ],
    ids=["editor-index", "concrete"],
)
def test_a_pasted_getmap_url_is_a_wms_config_with_its_values(picked, path, canonical):
    config = stored({"type": picked, "url": H + path})
    assert config == stored({"type": "wms", "url": H + "/wms?MAP=ortho", **canonical})


async def test_the_pasted_layer_is_the_one_requested(api, serve, renderer):
    app = wms_app(renderer, require_map="ortho")
    base = await serve(app)
    server = {"type": "wms", "name": "t", "url": base + EDITOR_GETMAP}
    resp = await api.post(
        "/servers/test",
        json={"server": server, "lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 50},
    )
    body = await resp.json()
    assert resp.status == 200 and body.get("error") is None, body
    assert "wms_getmap_url" in [f["code"] for f in body["findings"]]
    getmaps = [r for r in app[REQUESTS] if r.get("REQUEST", "").lower() == "getmap"]
    assert getmaps and {r["LAYERS"] for r in getmaps} == {"world"}
    assert all("{" not in v for r in app[REQUESTS] for v in r.values())


SERVICE = "/arcgis/rest/services/Ortho/MapServer"
ARCGIS_FORMS = {
    "export": SERVICE + "/export?bbox=1,2,3,4&bboxSR=3857&size=256,256&format=png32&f=image",
    "tile": SERVICE + "/tile/{z}/{y}/{x}",
    "layer": SERVICE + "/0",
    "pjson": SERVICE + "?f=pjson",
    "trailing-slash": SERVICE + "/",
}


@pytest.mark.parametrize("picked", ["arcgis", "wms", "xyz"])
@pytest.mark.parametrize("form", ARCGIS_FORMS)
def test_arcgis_url_forms_end_in_the_service_config(picked, form):
    config = stored({"type": picked, "url": H + ARCGIS_FORMS[form]})
    extra = {"format": "png32"} if form == "export" else {}
    assert config == stored({"type": "arcgis", "url": H + SERVICE, **extra})


def test_image_server_export_image_url():
    url = (
        H + "/arcgis/rest/services/Ortho/ImageServer/exportImage?bbox=1,2,3,4&format=jpgpng&f=image"
    )
    config = stored({"type": "wms", "url": url})
    assert config["url"] == H + "/arcgis/rest/services/Ortho/ImageServer"
    assert config["type"] == "arcgis" and config["format"] == "jpgpng"


def test_arcgis_wms_endpoint_stays_wms():
    url = H + "/arcgis/services/Ortho/MapServer/WMSServer?request=GetCapabilities&service=WMS"
    assert stored({"type": "wms", "url": url})["type"] == "wms"


async def test_a_tile_url_picked_as_xyz_reads_the_service(api, serve, renderer):
    app = arcgis_app(renderer)
    base = await serve(app)
    server = {
        "type": "xyz",
        "name": "t",
        "url": base + SERVICE + "/tile/{z}/{y}/{x}",
        "max_zoom": 16,
    }
    resp = await api.post(
        "/servers/test", json={"server": server, "lat": CENTER_LAT, "lon": CENTER_LON}
    )
    body = await resp.json()
    assert resp.status == 200 and body.get("error") is None, body
    codes = [f["code"] for f in body["findings"]]
    assert "type_changed" in codes
    paths = [seen.url for seen in app[STATE].requests]
    assert any("/tile/" in p for p in paths)
    assert all("{" not in p and "%7b" not in p.lower() for p in paths), paths


async def test_detect_answers_the_config_it_would_create(api):
    resp = await api.post("/servers/detect", json={"url": H + EDITOR_GETMAP})
    assert resp.status == 200
    body = await resp.json()
    assert body["config"]["type"] == "wms" and body["config"]["layers"] == ["world"]
    assert body["config"]["url"] == H + "/wms?MAP=ortho"
    assert "wms_getmap_url" in [f["code"] for f in body["findings"]]
    resp = await api.post("/servers/detect", json={"url": H + "/{zoom}/{x}/{y}.png"})
    body = await resp.json()
    assert body["config"]["type"] == "xyz" and body["config"]["url"] == H + "/{z}/{x}/{y}.png"
    resp = await api.post("/servers/detect", json={"url": H + ARCGIS_FORMS["tile"]})
    assert (await resp.json())["config"]["url"] == H + SERVICE
    assert (await api.get("/servers")).status == 200
    assert (await (await api.get("/servers")).json())["servers"] == []
    resp = await api.post("/servers/detect", json={"url": H + "/index.html"})
    assert resp.status == 422


async def test_diagnostics_show_the_url_sent_with_the_space_encoded(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    server = {"type": "xyz", "name": "t", "url": base + "/with space/{z}/{x}/{y}.png"}
    resp = await api.post(
        "/servers/test",
        json={"server": server, "lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 20},
    )
    body = await resp.json()
    assert body.get("error") is None, body
    urls = [r["url"] for r in body["diagnostics"]["requests"]]
    assert urls and all("/with%20space/" in u for u in urls)
