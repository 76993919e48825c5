"""Tile routes over WMS (metatiles), WMTS (pass-through and rendered sets) and ArcGIS."""

from __future__ import annotations

import asyncio

import pytest

from proxy.keys import SERVICES
from tests.groundtruth import assert_pixels_match, expected
from tests.proxy.tile_helpers import WMQ, add_server, centre_tile, decode, tile_grid
from tests.upstreams.arcgis import arcgis_app
from tests.upstreams.wms import REQUESTS, wms_app
from tests.upstreams.wmts import HITS, wmts_app


def getmaps(app) -> int:
    return sum(1 for r in app[REQUESTS] if r.get("REQUEST", "").lower() == "getmap")


async def assert_tile(api, sid, ground_truth, z, x, y, suffix=""):
    resp = await api.get(f"/servers/{sid}/tiles/{z}/{x}/{y}{suffix}")
    assert resp.status == 200, await resp.text()
    size = 512 if "@2x" in suffix else 256
    assert_pixels_match(decode(await resp.read()), expected(ground_truth, tile_grid(z, x, y, size)))
    return resp


async def test_wms_one_metatile_serves_all_its_tiles(api, serve, renderer, ground_truth):
    app = wms_app(renderer, max_size=(2048, 2048))
    base = await serve(app)
    sid = await add_server(api, {"type": "wms", "url": base + "/wms", "crs": "EPSG:3857"})
    t = centre_tile(15)
    x0, y0 = t.x // 4 * 4, t.y // 4 * 4
    block = [(x0 + i, y0 + j) for j in range(4) for i in range(4)]
    answers = await asyncio.gather(*(api.get(f"/servers/{sid}/tiles/15/{x}/{y}") for x, y in block))
    assert {r.status for r in answers} == {200}
    assert getmaps(app) == 1  # 16 tiles, concurrent: one GetMap
    assert api.server.app[SERVICES].tiles.metatiles.fetches == 1
    for x, y in block:  # tiles inside the ground truth land where it has them
        if abs(x - t.x) <= 1 and abs(y - t.y) <= 1:
            resp = await assert_tile(api, sid, ground_truth, 15, x, y)
            assert resp.headers["X-Cache"] == "HIT"
    assert getmaps(app) == 1


async def test_wms_without_web_mercator_is_reprojected(api, serve, renderer, ground_truth):
    app = wms_app(renderer, max_size=(4096, 4096))
    base = await serve(app)
    sid = await add_server(
        api, {"type": "wms", "url": base + "/wms", "version": "1.3.0", "crs": "EPSG:4326"}
    )
    t = centre_tile(15)
    await assert_tile(api, sid, ground_truth, 15, t.x, t.y)
    assert getmaps(app) == 1
    assert all(r.get("CRS") == "EPSG:4326" for r in app[REQUESTS] if "BBOX" in r)


async def test_wmts_google_set_passes_through_and_others_are_rendered(
    api, serve, renderer, ground_truth
):
    app = wmts_app(renderer)
    base = await serve(app)
    caps = base + "/wmts/1.0.0/WMTSCapabilities.xml"
    google = await add_server(api, {"type": "wmts", "url": caps, "layer": "lausanne"})
    t = centre_tile(15)
    resp = await api.get(f"/servers/{google}/tiles/15/{t.x}/{t.y}")
    upstream = renderer.tile(WMQ, t.x, t.y, 15, 256, "png")
    assert resp.status == 200 and await resp.read() == upstream
    geo = await add_server(api, {"type": "wmts", "url": caps, "layer": "lausanne_geo"})
    before = len(app[HITS])
    await assert_tile(api, geo, ground_truth, 15, t.x, t.y, ".png")
    await assert_tile(api, geo, ground_truth, 14, t.x // 2, t.y // 2, "@2x.png")
    assert len(app[HITS]) > before
    assert all(h[2] == "WGS84LatLon" for h in app[HITS][before:])
    doc = await (await api.get(f"/servers/{geo}/tilejson.json")).json()
    lon0, lat0, lon1, lat1 = doc["bounds"]
    assert lon0 < 6.63 < lon1 and lat0 < 46.52 < lat1


@pytest.mark.parametrize(
    ("service", "way"), [("Ortho/MapServer", "tiles"), ("Ortho/ImageServer", "export")]
)
async def test_arcgis_tiled_and_export(api, serve, renderer, ground_truth, service, way):
    base = await serve(arcgis_app(renderer))
    sid = await add_server(api, {"type": "arcgis", "url": f"{base}/arcgis/rest/services/{service}"})
    t = centre_tile(15)
    resp = await assert_tile(api, sid, ground_truth, 15, t.x, t.y)
    if way == "tiles":
        upstream = renderer.tile(WMQ, t.x, t.y, 15, 256, "png")
        assert await resp.read() == upstream
