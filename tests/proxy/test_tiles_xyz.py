"""Tile routes over an XYZ upstream: pass-through, formats, cache headers, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy.app import create_app
from proxy.keys import SERVICES
from streaming.grid import web_mercator_tms
from tests.conftest import API_KEY
from tests.groundtruth import assert_pixels_match, expected
from tests.proxy.tile_helpers import add_server, centre_tile, decode, tile_grid
from tests.upstreams.xyz import CONDITIONALS, HITS, xyz_app


async def xyz_server(api, serve, renderer, **app_options):
    app = xyz_app(renderer, **app_options)
    base = await serve(app)
    server_id = await add_server(
        api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png", "max_zoom": 16}
    )
    return app, base, server_id


def hits(app) -> int:
    return sum(1 for kind, _ in app[HITS] if kind == "xyz")


async def test_pass_through_bytes_headers_and_hits(api, serve, renderer):
    app, _, sid = await xyz_server(api, serve, renderer)
    t = centre_tile(15)
    upstream = renderer.tile(web_mercator_tms(256), t.x, t.y, 15, 256, "png")
    first = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert first.status == 200, await first.text()
    assert await first.read() == upstream  # unchanged: no decode, no re-encode
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Content-Type"] == "image/png"
    assert first.headers["Cache-Control"] == "max-age=86400"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}.png")
    assert again.headers["X-Cache"] == "HIT" and await again.read() == upstream
    assert hits(app) == 1
    # the client's own revalidation: 304, no body
    cond = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}", headers={"If-None-Match": etag})
    assert cond.status == 304 and await cond.read() == b""
    assert cond.headers["ETag"] == etag and cond.headers["X-Cache"] == "HIT"


async def test_jpeg_and_webp_are_converted_and_land_on_the_ground_truth(
    api, serve, renderer, ground_truth
):
    _, _, sid = await xyz_server(api, serve, renderer)
    t = centre_tile(15)
    oracle = expected(ground_truth, tile_grid(15, t.x, t.y))
    for ext, media in (("jpg", "image/jpeg"), ("webp", "image/webp")):
        resp = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}.{ext}")
        assert resp.status == 200 and resp.headers["Content-Type"] == media
        assert_pixels_match(decode(await resp.read()), oracle, tolerance=10)


async def test_retina_and_512_sources_are_rendered(api, serve, renderer, ground_truth):
    _, _, sid = await xyz_server(api, serve, renderer)
    t = centre_tile(14)
    resp = await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}@2x.png")
    assert resp.status == 200, await resp.text()
    assert_pixels_match(
        decode(await resp.read()), expected(ground_truth, tile_grid(14, t.x, t.y, 512))
    )
    app512 = xyz_app(renderer, tile_size=512)
    base = await serve(app512)
    sid512 = await add_server(
        api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png", "tile_size": 512}
    )
    t = centre_tile(15)
    resp = await api.get(f"/servers/{sid512}/tiles/15/{t.x}/{t.y}")  # 256 from 512 tiles
    assert resp.status == 200, await resp.text()
    assert_pixels_match(decode(await resp.read()), expected(ground_truth, tile_grid(15, t.x, t.y)))
    up = renderer.tile(web_mercator_tms(512), t.x // 2, t.y // 2, 14, 512, "png")
    same = await api.get(f"/servers/{sid512}/tiles/14/{t.x // 2}/{t.y // 2}@2x")
    assert await same.read() == up  # 512 px asked of 512 px tiles: passed through


async def test_concurrent_cold_requests_make_one_upstream_request(api, serve, renderer):
    app, _, sid = await xyz_server(api, serve, renderer)
    t = centre_tile(14)
    answers = await asyncio.gather(
        *(api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}") for _ in range(200))
    )
    bodies = {await r.read() for r in answers}
    assert {r.status for r in answers} == {200} and len(bodies) == 1
    assert hits(app) == 1


async def test_no_data_is_a_transparent_tile(api, serve, renderer):
    _, _, sid = await xyz_server(api, serve, renderer)
    resp = await api.get(f"/servers/{sid}/tiles/3/0/0")  # outside the ground truth: 404
    assert resp.status == 200 and resp.headers["X-Tile-Empty"] == "true"
    assert decode(await resp.read())[3].max() == 0


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/tiles/3/8/0", 400, "invalid_tile"),
        ("/tiles/3/0/8.png", 400, "invalid_tile"),
        ("/tiles/25/0/0", 400, "invalid_tile"),
        ("/tiles/a/0/0", 400, "invalid_tile"),
        ("/tiles/3/0/0.gif", 400, "unsupported_format"),
        ("/tiles/18/0/0", 404, "tile_not_found"),
    ],
)
async def test_bad_tiles(api, serve, renderer, path, status, code):
    _, _, sid = await xyz_server(api, serve, renderer)
    resp = await api.get(f"/servers/{sid}{path}")
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == code and error["hint"]
    if code == "tile_not_found":
        assert "0..16" in error["message"] and error["max_zoom"] == 16


async def test_unknown_server_is_404(api):
    resp = await api.get("/servers/nope/tiles/1/0/0")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_html_with_200_is_502_and_not_cached(api, serve, renderer):
    app = xyz_app(renderer)
    base = await serve(app)
    sid = await add_server(api, {"type": "xyz", "url": base + "/html/{z}/{x}/{y}"})
    for _ in range(2):
        resp = await api.get(f"/servers/{sid}/tiles/5/1/1")
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == "upstream_bad_content"
    stats = await (await api.get(f"/servers/{sid}/cache")).json()
    assert stats["entries"] == 0 and stats["memory_entries"] == 0


@pytest.fixture
def fast(settings):
    """Settings with a short upstream timeout and no retries."""
    import attrs

    return attrs.evolve(settings, upstream_timeout=0.3, upstream_retries=0)


async def test_upstream_timeout_is_504(aiohttp_client, fast, serve, renderer):
    api = await aiohttp_client(create_app(fast), headers={"X-API-Key": API_KEY})
    base = await serve(xyz_app(renderer))
    sid = await add_server(api, {"type": "xyz", "url": base + "/slow/{z}/{x}/{y}.png"})
    resp = await api.get(f"/servers/{sid}/tiles/5/1/1")
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"


async def test_stale_if_error_with_the_upstream_stopped(
    aiohttp_client, aiohttp_server, fast, renderer
):
    api = await aiohttp_client(create_app(fast), headers={"X-API-Key": API_KEY})
    upstream = await aiohttp_server(xyz_app(renderer), host="127.0.0.1")
    base = str(upstream.make_url("")).rstrip("/")
    sid = await add_server(
        api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png", "cache_ttl": 0}
    )
    t = centre_tile(15)
    first = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    body = await first.read()
    await upstream.close()
    stale = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert await stale.read() == body
    cold = await api.get(f"/servers/{sid}/tiles/15/{t.x + 1}/{t.y}")
    assert cold.status in (503, 504)  # nothing cached there: the upstream's failure


async def test_conditional_revalidation_sends_if_none_match(api, serve, renderer):
    app = xyz_app(renderer, etags=True)
    base = await serve(app)
    sid = await add_server(
        api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png", "cache_ttl": 0}
    )
    t = centre_tile(15)
    first = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    second = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert app[CONDITIONALS][0] is None and app[CONDITIONALS][1].startswith('"')
    assert second.headers["X-Cache"] == "HIT"  # refreshed by the 304, body not sent again
    assert await second.read() == await first.read()
    assert second.headers["ETag"] == first.headers["ETag"]


async def test_corrupt_disk_entry_is_fetched_again(api, serve, renderer, settings):
    app, _, sid = await xyz_server(api, serve, renderer)
    t = centre_tile(15)
    good = await (await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")).read()
    await api.server.app[SERVICES].tile_cache.settle()  # the disk write follows the answer
    files = list(Path(settings.data_dir, "cache").rglob(f"tile/15/{t.x}/{t.y}"))
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-10] + b"0123456789")  # bit rot in the body
    api.server.app[SERVICES].tile_cache.memory.clear()
    again = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert again.headers["X-Cache"] == "MISS" and await again.read() == good
    assert hits(app) == 2
