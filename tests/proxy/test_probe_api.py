"""Test connection through the API: preview pixels, diagnostics, findings and hints."""

from __future__ import annotations

import base64
import math
import ssl

import numpy as np
import pytest
import trustme
from rasterio.io import MemoryFile

from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    expected,
    preview_grid,
)
from tests.upstreams.xyz import xyz_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 256}


def png_pixels(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as src:
        assert src.driver == "PNG"
        return src.read()


def jpeg_pixels(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as src:
        assert src.driver == "JPEG"
        return src.read()


async def probe(api, server, **place):
    return await api.post("/servers/test", json={"server": server, **PLACE, **place})


def xyz(url, **extra):
    return {"type": "xyz", "name": "t", "url": url, **extra}


async def test_preview_pixels_and_diagnostics(api, serve, renderer, ground_truth):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png", params={"token": "tok-123456"}))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["ok"] is True and body["zoom"] == 14
    assert body["preview"]["media_type"] == "image/jpeg"  # auto: the preview is opaque
    rgba = jpeg_pixels(base64.b64decode(body["preview"]["base64"]))
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    assert_pixels_match(rgba, expected(ground_truth, output))
    requests = body["diagnostics"]["requests"]
    assert len(requests) == body["diagnostics"]["upstream_requests"] >= 4
    first = requests[0]
    assert first["status"] == 200 and first["content_type"] == "image/png"
    assert first["bytes"] > 0 and first["latency_ms"] >= 0
    assert "/14/" in first["url"] and "tok-123456" not in await resp.text()


async def test_preview_as_png(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await api.post(
        "/servers/test?format=png",
        json={"server": xyz(base + "/a/tiles/{z}/{x}/{y}.png"), **PLACE},
    )
    assert resp.status == 200 and resp.content_type == "image/png"
    assert resp.headers["X-Preview-Zoom"] == "14"
    assert png_pixels(await resp.read()).shape == (4, 256, 256)


async def test_saved_server_uses_its_preview_point_and_resolution(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    config = xyz(
        base + "/a/tiles/{z}/{x}/{y}.png",
        resolution=20.0,
        preview={"lat": CENTER_LAT, "lon": CENTER_LON},
    )
    created = await (await api.post("/servers", json=config)).json()
    resp = await api.post(f"/servers/{created['id']}/test")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["resolution"] == 20.0 and body["zoom"] == 13


async def test_encoded_placeholders_are_decoded_and_reported(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/a/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png"))
    assert resp.status == 200
    codes = [f["code"] for f in (await resp.json())["findings"]]
    assert codes == ["encoded_placeholders"]


async def test_no_placeholders(api):
    resp = await probe(api, xyz("http://127.0.0.1:9/tiles/latest.png"))
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "invalid_input"
    assert [f["code"] for f in body["findings"]] == ["no_placeholders"]


@pytest.mark.parametrize("past_max_zoom", ["404", "empty", "blank"])
async def test_resolution_not_supported_names_the_deepest_zoom_with_data(
    api, serve, renderer, past_max_zoom
):
    base = await serve(xyz_app(renderer, max_zoom=12, past_max_zoom=past_max_zoom))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png"), resolution=2.0)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "resolution_not_supported"
    assert body["error"]["deepest_zoom"] == 12
    # zoom 12 is 38.22 m in Mercator, 26.31 m on the ground at 46.52°N
    ground = 2 * math.pi * 6378137 / 256 / 2**12 * math.cos(math.radians(CENTER_LAT))
    assert body["error"]["suggested_resolution"] == pytest.approx(ground, abs=1e-3)
    assert f"try {ground:.2f} m/px" in body["error"]["hint"]
    statuses = {r["status"] for r in body["diagnostics"]["requests"]}
    assert statuses == ({404, 200} if past_max_zoom == "404" else {200})


async def test_no_data_anywhere(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png"), lat=-40.0, lon=-60.0)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "no_data"


async def test_auth_failure(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/auth/{z}/{x}/{y}.png", headers={"X-Api-Key": "wrong"}))
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_auth"
    assert body["findings"][0]["hint"].startswith("check the credentials")
    assert "wrong" not in await resp.text()


async def test_wrong_content_type(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/html/{z}/{x}/{y}"))
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_wrong_content_type"
    assert "text/html" in body["error"]["message"]


async def test_unreachable_upstream(api):
    resp = await probe(api, xyz("http://127.0.0.1:9/{z}/{x}/{y}.png"))
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "upstream_unavailable"
    assert body["diagnostics"]["requests"][0]["error"]


@pytest.fixture(scope="module")
def tls_ca():
    return trustme.CA()


async def test_tls_failure_suggests_skip_ssl(api, aiohttp_server, renderer, tls_ca):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = await aiohttp_server(xyz_app(renderer), ssl=server_ctx)
    url = f"https://127.0.0.1:{server.port}/a/tiles/{{z}}/{{x}}/{{y}}.png"
    resp = await probe(api, xyz(url))
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_tls"
    assert "skip_ssl" in body["error"]["hint"]
    # with skip_ssl the same server works
    resp = await probe(api, xyz(url, skip_ssl=True))
    assert resp.status == 200, await resp.text()


async def test_blocked_address_without_allowed_networks(aiohttp_client, settings, serve, renderer):
    import attrs

    from proxy.app import create_app

    strict = attrs.evolve(settings, allowed_networks=())
    api = await aiohttp_client(create_app(strict), headers={"X-API-Key": "test-key"})
    base = await serve(xyz_app(renderer))
    for url in (base, base.replace("127.0.0.1", "localhost")):
        resp = await probe(api, xyz(url + "/a/tiles/{z}/{x}/{y}.png"))
        assert resp.status == 403, url
        assert (await resp.json())["error"]["code"] == "blocked_address"


async def test_bad_place_and_size(api):
    server = xyz("http://127.0.0.1:9/{z}/{x}/{y}.png")
    for extra, status in [({"lat": 95}, 422), ({"size": 5000}, 422), ({"resolution": 0}, 422)]:
        resp = await probe(api, server, **extra)
        assert resp.status == status, extra
        assert (await resp.json())["error"]["code"] == "invalid_input"
    resp = await api.post("/servers/test", json={"server": server})
    assert resp.status == 422


async def test_resolution_finer_than_the_finest_zoom_is_a_warning(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png", max_zoom=13), resolution=5.0)
    assert resp.status == 200
    body = await resp.json()
    assert body["zoom"] == 13
    (finding,) = body["findings"]
    assert finding["code"] == "finer_than_source" and "13.15 m/px" in finding["hint"]


async def test_a_place_outside_the_layer_is_no_data_not_a_resolution_problem(api, serve, renderer):
    # ~15 km east of the ground truth's 9.8 km square: fine zooms have no tile there, and the
    # coarse tile that holds the point holds data only to its west.
    base = await serve(xyz_app(renderer))
    resp = await probe(
        api, xyz(base + "/a/tiles/{z}/{x}/{y}.png"), lat=CENTER_LAT, lon=CENTER_LON + 0.2
    )
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["code"] == "no_data"
    assert "not at this lat/lon" in body["error"]["message"]
    assert any(r["status"] == 200 for r in body["diagnostics"]["requests"])  # data nearby


async def test_invalid_level_400_past_the_last_level_is_like_a_404(api, serve, renderer):
    base = await serve(xyz_app(renderer, max_zoom=12, past_max_zoom="400"))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png"), resolution=2.0)
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["code"] == "resolution_not_supported"
    assert body["error"]["deepest_zoom"] == 12
    assert "refused zoom" in body["error"]["message"]


def test_an_opaque_white_fill_around_the_point_is_not_data() -> None:
    from proxy.no_data import data_at
    from streaming.encode import encode_png

    rgba = np.full((4, 256, 256), 255, dtype=np.uint8)  # opaque white: the server's fill
    rgba[:3, :, :128] = np.random.default_rng(1).integers(0, 255, (3, 256, 128))  # data west
    png = encode_png(rgba)
    assert data_at(png, 1 << 20, (256, 256), (200, 100)) is False
    assert data_at(png, 1 << 20, (256, 256), (50, 100)) is True
    assert (
        data_at(encode_png(np.full((4, 256, 256), 255, np.uint8)), 1 << 20, (256, 256), (5, 5))
        is None
    )


async def test_levels_numbered_from_zoom_one_are_detected_and_named(api, serve, renderer):
    # /shift/ serves zoom L+1 at level L, as MapProxy's TMS does: zoom_offset -1 is the fix.
    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/shift/{z}/{x}/{y}.png"), resolution=10.0)
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["code"] == "levels_shifted"
    assert body["error"]["zoom_offset"] == -1
    assert "zoom_offset: -1" in body["error"]["hint"]
    fixed = await probe(api, xyz(base + "/shift/{z}/{x}/{y}.png", zoom_offset=-1), resolution=10.0)
    assert fixed.status == 200, await fixed.text()
