"""Issue 9 items 1, 6, 7, 12 and 15 through the API: each bad input gets a clear 4xx (or a
clear upstream error) with a hint, and never a traceback in the log."""

from __future__ import annotations

import logging

import attrs
import numpy as np
import pytest
from aiohttp import web
from rasterio.io import MemoryFile

from proxy.app import create_app
from proxy.cli import main
from proxy.config import load_settings
from streaming.encode import encode_png
from tests.conftest import API_KEY
from tests.proxy.test_probe_api import probe, xyz

TILE = "http://tiles.example.com/{z}/{x}/{y}.png"


def server(**extra):
    return {"type": "xyz", "name": "t", "url": TILE, **extra}


@pytest.fixture
def no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an error was logged with a traceback"


def assert_error(body, code=None):
    error = body["error"]
    assert error["message"] and error["hint"], body
    if code is not None:
        assert error["code"] == code, body


# -- item 1: API keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [("X-API-Key", ""), ("X-API-Key", "   "), ("Authorization", "Bearer ")]
)
async def test_an_empty_key_never_authenticates(aiohttp_client, settings, header, no_traceback):
    # Even a key set that holds a blank key (a blank line of config) lets no blank key in.
    app = create_app(attrs.evolve(settings, api_keys=(API_KEY, " ")))
    client = await aiohttp_client(app)
    resp = await client.get("/servers", headers=dict([header]))
    assert resp.status == 401
    assert_error(await resp.json(), "unauthorized")


@pytest.mark.parametrize("key", ["clé-ünïcode", "\udcff", "ключ"])
async def test_a_non_ascii_key_is_a_401(aiohttp_client, settings, key, no_traceback):
    client = await aiohttp_client(create_app(settings))
    raw = key.encode("utf-8", "surrogateescape")
    resp = await client.get("/servers", headers={"X-API-Key": raw.decode("latin-1")})
    assert resp.status == 401
    assert_error(await resp.json(), "unauthorized")


async def test_a_generated_key_file_is_private_and_whole(aiohttp_client, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "d")
    client = await aiohttp_client(create_app(settings))
    path = tmp_path / "d" / "api-key"
    assert path.stat().st_mode & 0o777 == 0o600
    key = path.read_text().strip()
    assert len(key) >= 32
    assert (await client.get("/servers", headers={"X-API-Key": key})).status == 200
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_start_up_refuses_a_blank_key_file(tmp_path, content, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "api-key").write_text(content)
    assert main(["--data-dir", str(tmp_path / "d"), "servers", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "api-key" in err and "empty" in err
    assert "Traceback" not in err
    assert (tmp_path / "d" / "api-key").read_text() == content  # left for the operator


# -- item 7: validation at the edge ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"resolution": "nan"}, "resolution"),
        ({"resolution": "inf"}, "resolution"),
        ({"resolution": 1e308}, "resolution"),
        ({"rate_limit": "NaN"}, "rate_limit"),
        ({"rate_limit": 1e-300}, "rate_limit"),
        ({"rate_limit": 0.001}, "rate_limit"),
        ({"rate_limit": 1e308}, "rate_limit"),
        ({"cache_ttl": 1e308}, "cache_ttl"),
        ({"preview": {"lat": "nan", "lon": 0}}, "preview"),
        ({"preview": {"lat": 0, "lon": "-inf"}}, "preview"),
        ({"headers": {"X-A": "v\r\nX-Injected: 1"}}, "headers"),
        ({"headers": {"X-A": "v\x00"}}, "headers"),
        ({"headers": {"X A\n": "v"}}, "headers"),
        ({"url": "http://tiles.example.com/{z}/{x}/{y}.png\r\nHost: evil"}, "url"),
        ({"url": "http://tiles.exam\x00ple.com/{z}/{x}/{y}.png"}, "url"),
        ({"credential_hosts": ["http://x.example/"]}, "credential_hosts"),
    ],
)
async def test_bad_fields_are_a_422(api, extra, field, no_traceback):
    resp = await api.post("/servers", json=server(**extra))
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert_error(body, "invalid_input")
    assert field in str(body)


@pytest.mark.parametrize(
    "place",
    [
        {"lat": "nan"},
        {"lon": "inf"},
        {"resolution": "-Infinity"},
        {"resolution": 1e308},
        {"size": "inf"},
        {"size": 1e308},
        {"lat": [1]},
    ],
)
async def test_bad_numbers_of_a_test_connection_are_a_422(api, place, no_traceback):
    resp = await api.post("/servers/test", json={"server": server(), **place})
    assert resp.status == 422, await resp.text()
    assert_error(await resp.json())


@pytest.mark.parametrize(
    "url", ["http://2130706433/{z}/{x}/{y}.png", "http://127.1/{z}/{x}/{y}.png"]
)
async def test_numeric_ipv4_urls_are_blocked_like_their_address(aiohttp_client, tmp_path, url):
    settings = load_settings(env={}, data_dir=tmp_path / "d", api_keys=(API_KEY,))
    client = await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
    resp = await probe(client, xyz(url))
    assert resp.status == 403
    assert_error(await resp.json(), "blocked_address")


async def test_a_tiny_rate_limit_still_answers(api, serve, renderer, no_traceback):
    from tests.upstreams.xyz import xyz_app

    base = await serve(xyz_app(renderer))
    resp = await probe(api, xyz(base + "/a/tiles/{z}/{x}/{y}.png", rate_limit=0.5), size=64)
    assert resp.status in (200, 504), await resp.text()  # slow, but never a 500


# -- item 6: editing the URL to another host ------------------------------------------


async def test_moving_a_server_to_another_host_needs_its_secrets_again(api):
    created = await (
        await api.post("/servers", json=server(headers={"Authorization": "Bearer s3cret"}))
    ).json()
    path = f"/servers/{created['id']}"
    other = "http://elsewhere.example.org/{z}/{x}/{y}.png"
    resp = await api.patch(path, json={"url": other})
    assert resp.status == 422
    body = await resp.json()
    assert_error(body, "invalid_input")
    assert body["error"]["fields"] == ["headers"] and "s3cret" not in str(body)
    masked = await api.patch(path, json={"url": other, "headers": {"Authorization": "***"}})
    assert masked.status == 422
    # Same host, other path: the secrets follow as before.
    same = await api.patch(path, json={"url": "http://tiles.example.com/v2/{z}/{x}/{y}.png"})
    assert same.status == 200
    resent = await api.patch(path, json={"url": other, "headers": {"Authorization": "Bearer n3w"}})
    assert resent.status == 200
    dropped = await api.patch(path, json={"url": TILE, "headers": {}})
    assert dropped.status == 200 and (await dropped.json())["headers"] == {}


# -- item 12: a hint in every error body -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("DELETE", "/servers", 405),
        ("GET", "/servers/nope", 404),
        ("POST", "/servers", 400),
    ],
)
async def test_every_error_body_has_a_hint(api, method, path, status):
    resp = await api.request(method, path, data=b"{not json")
    assert resp.status == status
    assert_error(await resp.json())


async def test_an_unreachable_upstream_error_carries_its_hint(api):
    resp = await probe(api, xyz("http://127.0.0.1:9/{z}/{x}/{y}.png"))
    assert resp.status in (502, 503)
    assert_error(await resp.json(), "upstream_unavailable")


# -- item 15: truncated or undecodable images answered with 200 --------------------------


def _jpeg(rgba):
    with MemoryFile() as mem:
        with mem.open(driver="JPEG", width=256, height=256, count=3, dtype="uint8") as dst:
            dst.write(rgba[:3])
        return mem.read()


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("png", "upstream_truncated_image"),
        ("jpg", "upstream_truncated_image"),
        ("garbage", "upstream_bad_response"),
    ],
)
async def test_a_broken_image_answered_with_200_is_a_finding(api, serve, kind, code):
    rgba = np.random.default_rng(1).integers(0, 255, (4, 256, 256), dtype=np.uint8)
    rgba[3] = 255
    png, jpg = encode_png(rgba), _jpeg(rgba)
    bodies = {
        "png": png[: len(png) // 2],
        "jpg": jpg[: len(jpg) // 2],
        # Whole (it ends with IEND) but its chunks are garbage.
        "garbage": png[:33] + b"\x00" * 200 + png[-12:],
    }

    async def tile(request: web.Request) -> web.Response:
        return web.Response(body=bodies[kind], content_type="image/png")

    app = web.Application()
    app.router.add_get("/{z}/{x}/{y}", tile)
    base = await serve(app)
    resp = await probe(api, xyz(base + "/{z}/{x}/{y}"))
    body = await resp.json()
    assert resp.status == 502, body
    assert_error(body, code)
    assert [f["code"] for f in body["findings"]] == [code]
    assert body["findings"][0]["hint"]
