"""Test connection through the API for every server type, pixels against the ground truth."""

from __future__ import annotations

import base64

import pytest
from rasterio.io import MemoryFile

from proxy.upstream.registry import parse_config
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    expected,
    preview_grid,
)
from tests.upstreams.arcgis import PASSWORD, USER, arcgis_app
from tests.upstreams.wms import wms_app
from tests.upstreams.wmts import wmts_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 256}


async def probe(api, server):
    return await api.post("/servers/test", json={"server": {"name": "t", **server}, **PLACE})


async def assert_preview_matches(resp, ground_truth, tolerance=8.0):
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    with MemoryFile(base64.b64decode(body["preview"]["base64"])) as mem, mem.open() as src:
        rgba = src.read()
    grid = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    assert_pixels_match(rgba, expected(ground_truth, grid), tolerance)
    return body


@pytest.mark.parametrize(
    ("version", "crs"),
    [("1.1.1", "EPSG:3857"), ("1.3.0", "EPSG:3857"), ("1.3.0", "EPSG:4326")],
)
async def test_wms(api, serve, renderer, ground_truth, version, crs):
    base = await serve(wms_app(renderer))
    server = {"type": "wms", "url": base + "/wms", "version": version, "crs": crs}
    body = await assert_preview_matches(await probe(api, server), ground_truth)
    getmaps = [r for r in body["diagnostics"]["requests"] if "GetMap" in r["url"]]
    assert len(getmaps) == 4  # 256 px split under MaxWidth 200 / MaxHeight 150


async def test_wms_service_exception_is_reported_with_its_text(api, serve, renderer):
    base = await serve(wms_app(renderer))
    resp = await probe(api, {"type": "wms", "url": base + "/wms", "layers": ["retired"]})
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_service_exception"
    assert "Layer 'retired' is not defined" in body["error"]["message"]
    assert body["findings"][0]["code"] == "upstream_service_exception"


async def test_wms_unknown_layer(api, serve, renderer):
    base = await serve(wms_app(renderer))
    resp = await probe(api, {"type": "wms", "url": base + "/wms", "layers": ["nope"]})
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("matrix_set", ["GoogleMapsCompatible", "WGS84LatLon"])
async def test_wmts(api, serve, renderer, ground_truth, matrix_set):
    base = await serve(wmts_app(renderer))
    server = {
        "type": "wmts",
        "url": base + "/wmts/1.0.0/WMTSCapabilities.xml",
        "layer": "lausanne",
        "tile_matrix_set": matrix_set,
    }
    await assert_preview_matches(await probe(api, server), ground_truth, tolerance=10)


async def test_wmts_exception_report(api, serve, renderer):
    base = await serve(wmts_app(renderer))
    server = {"type": "wmts", "url": base + "/wmts/1.0.0/WMTSCapabilities.xml", "layer": "faulty"}
    resp = await probe(api, server)
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_service_exception"
    assert "backend down" in body["error"]["message"]


async def test_wmts_to_xyz_helper_then_test_connection(api, serve, renderer, ground_truth):
    base = await serve(wmts_app(renderer))
    wmts = {"type": "wmts", "name": "w", "url": base + "/wmts/1.0.0/WMTSCapabilities.xml"}
    resp = await api.post("/servers/from-wmts", json={**wmts, "layer": "lausanne"})
    assert resp.status == 200, await resp.text()
    xyz = await resp.json()
    assert parse_config(xyz).type == "xyz"
    assert "{z}" in xyz["url"] and xyz["preview"]["lat"] == pytest.approx(CENTER_LAT, abs=0.1)
    await assert_preview_matches(await probe(api, xyz), ground_truth)
    resp = await api.post("/servers/from-wmts", json={**wmts, "layer": "lausanne_geo"})
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "unsupported"


def arcgis(base: str, service: str, **extra):
    return {"type": "arcgis", "url": f"{base}/arcgis/rest/services/{service}", **extra}


async def test_arcgis_tiled_with_token(api, serve, renderer, ground_truth):
    base = await serve(arcgis_app(renderer))
    server = arcgis(base, "Ortho/MapServer", credentials=f"{USER}:{PASSWORD}")
    resp = await probe(api, server)
    body = await assert_preview_matches(resp, ground_truth)
    text = await resp.text()
    assert PASSWORD not in text
    assert any("generateToken" in r["url"] for r in body["diagnostics"]["requests"])
    assert all("token=" not in r["url"].lower() for r in body["diagnostics"]["requests"])


async def test_arcgis_export_image(api, serve, renderer, ground_truth):
    base = await serve(arcgis_app(renderer))
    resp = await probe(api, arcgis(base, "Ortho/ImageServer"))
    await assert_preview_matches(resp, ground_truth, tolerance=3)


async def test_arcgis_bad_credentials(api, serve, renderer):
    base = await serve(arcgis_app(renderer))
    resp = await probe(api, arcgis(base, "Ortho/MapServer", credentials=f"{USER}:wrong-pass"))
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_auth"
    assert "wrong-pass" not in await resp.text()


@pytest.mark.parametrize("service", ["Elevation/ImageServer", "Swiss/ImageServer"])
async def test_arcgis_unsupported(api, serve, renderer, service):
    base = await serve(arcgis_app(renderer))
    resp = await probe(api, arcgis(base, service))
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "unsupported"
    assert ("LERC" if "Elevation" in service else "2056") in body["error"]["message"]


async def test_capabilities_of_a_saved_and_an_unsaved_server(api, serve, renderer):
    base = await serve(wms_app(renderer))
    config = {"type": "wms", "name": "w", "url": base + "/wms"}
    resp = await api.post("/capabilities", json=config)
    assert resp.status == 200, await resp.text()
    summary = await resp.json()
    assert summary["max_width"] == 200 and summary["max_height"] == 150
    assert "truth" in [layer["name"] for layer in summary["layers"]]
    created = await (await api.post("/servers", json=config)).json()
    resp = await api.get(f"/servers/{created['id']}/capabilities")
    assert (await resp.json())["layers"] == summary["layers"]
