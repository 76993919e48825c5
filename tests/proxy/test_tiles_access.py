"""Tile tokens, TileJSON, and cache management (stats, deletion, edits) over the API."""

from __future__ import annotations

import logging

import pytest

from proxy.app import create_app
from proxy.keys import SERVICES
from tests.proxy.tile_helpers import add_server, centre_tile
from tests.upstreams.xyz import HITS, xyz_app


@pytest.fixture
async def anon(aiohttp_client, api):
    """A client of the same service without the API key (a map client)."""
    return await aiohttp_client(api.server)


async def server(api, serve, renderer, **extra):
    app = xyz_app(renderer)
    base = await serve(app)
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    return app, await add_server(api, {"type": "xyz", "url": url, "max_zoom": 16, **extra})


async def test_a_token_opens_the_tiles_and_tilejson_of_its_server_only(api, anon, serve, renderer):
    _, sid = await server(api, serve, renderer, preview={"lat": 46.52, "lon": 6.63})
    _, other = await server(api, serve, renderer)
    t = centre_tile(15)
    assert (await anon.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")).status == 401
    minted = await api.post(f"/servers/{sid}/tile-tokens", json={"ttl": 600})
    assert minted.status == 201, await minted.text()
    token = (await minted.json())["token"]
    ok = await anon.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}", params={"token": token})
    assert ok.status == 200 and ok.headers["Content-Type"] == "image/png"
    doc = await anon.get(f"/servers/{sid}/tilejson.json", params={"token": token})
    assert doc.status == 200 and doc.headers["Cache-Control"] == "no-store"
    body = await doc.json()
    assert body["tilejson"] == "3.0.0" and (body["minzoom"], body["maxzoom"]) == (0, 16)
    host = f"http://{anon.server.host}:{anon.server.port}"
    assert body["tiles"] == [f"{host}/servers/{sid}/tiles/{{z}}/{{x}}/{{y}}?token={token}"]
    assert body["center"][:2] == [6.63, 46.52] and len(body["bounds"]) == 4
    # another server, or any other route: refused
    for path in (f"/servers/{other}/tiles/15/{t.x}/{t.y}", f"/servers/{other}/tilejson.json"):
        resp = await anon.get(path, params={"token": token})
        assert resp.status == 401
        assert "another server" in (await resp.json())["error"]["message"]
    assert (await anon.get(f"/servers/{sid}", params={"token": token})).status == 401
    assert (await anon.post(f"/servers/{sid}/tile-tokens", params={"token": token})).status == 401


async def test_expired_and_tampered_tokens_are_refused(api, anon, serve, renderer):
    _, sid = await server(api, serve, renderer)
    tokens = api.server.app[SERVICES].tokens
    expired, _ = tokens.mint(sid, -10)
    good, _ = tokens.mint(sid, 600)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    longer = good.replace(f".{good.split('.')[1]}.", f".{int(good.split('.')[1]) + 9999}.")
    for token, words in (
        (expired, "expired"),
        (tampered, "not valid"),
        (longer, "not valid"),
        ("garbage", "malformed"),
    ):
        resp = await anon.get(f"/servers/{sid}/tiles/1/0/0", params={"token": token})
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert error["code"] == "unauthorized" and words in error["message"] and error["hint"]


async def test_token_ttl_is_bounded(api, serve, renderer):
    _, sid = await server(api, serve, renderer)
    for ttl in (0, 10**9, "x"):
        resp = await api.post(f"/servers/{sid}/tile-tokens", json={"ttl": ttl})
        assert resp.status == 422
    assert (await api.post("/servers/nope/tile-tokens")).status == 404


async def test_forwarded_headers_are_ignored_unless_trusted(aiohttp_client, settings, api):
    import attrs

    sid = await add_server(api, {"type": "xyz", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "maps.example.org"}
    doc = await (await api.get(f"/servers/{sid}/tilejson.json", headers=forwarded)).json()
    assert doc["tiles"][0].startswith(f"http://{api.server.host}:{api.server.port}/")
    trusted = attrs.evolve(settings, trust_forwarded=True)
    other = await aiohttp_client(create_app(trusted), headers={"X-API-Key": "test-key"})
    sid = await add_server(other, {"type": "xyz", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png"})
    doc = await (await other.get(f"/servers/{sid}/tilejson.json", headers=forwarded)).json()
    assert doc["tiles"][0].startswith("https://maps.example.org/servers/")


async def test_cache_stats_and_deletion_by_zoom_and_bbox(api, serve, renderer):
    app, sid = await server(api, serve, renderer)
    t15, t14 = centre_tile(15), centre_tile(14)
    for z, t in ((15, t15), (14, t14)):
        assert (await api.get(f"/servers/{sid}/tiles/{z}/{t.x}/{t.y}")).status == 200
        await api.get(f"/servers/{sid}/tiles/{z}/{t.x}/{t.y}")
    stats = await (await api.get(f"/servers/{sid}/cache")).json()
    assert stats["entries"] == 2 and stats["bytes"] > 0 and stats["hit_ratio"] == 0.5
    gone = await api.delete(f"/servers/{sid}/cache", params={"min_zoom": 15, "max_zoom": 15})
    assert (await gone.json())["deleted_entries"] == 1
    far = await api.delete(f"/servers/{sid}/cache", params={"bbox": "-10,-10,-9,-9"})
    assert (await far.json())["deleted_entries"] == 0
    near = await api.delete(f"/servers/{sid}/cache", params={"bbox": "6.6,46.5,6.7,46.55"})
    assert (await near.json())["deleted_entries"] == 1
    assert (await (await api.get(f"/servers/{sid}/cache")).json())["entries"] == 0
    again = await api.get(f"/servers/{sid}/tiles/15/{t15.x}/{t15.y}")
    assert again.headers["X-Cache"] == "MISS"
    for bad in ({"min_zoom": "x"}, {"min_zoom": 5, "max_zoom": 2}, {"bbox": "1,2,3"}):
        assert (await api.delete(f"/servers/{sid}/cache", params=bad)).status == 400


async def test_editing_the_url_makes_old_entries_unreachable(api, serve, renderer):
    app, sid = await server(api, serve, renderer)
    t = centre_tile(15)
    await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert [s for _, s in app[HITS]] == ["a"]
    url = (await (await api.get(f"/servers/{sid}")).json())["url"].replace("/a/", "/b/")
    assert (await api.patch(f"/servers/{sid}", json={"url": url})).status == 200
    resp = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert resp.headers["X-Cache"] == "MISS" and [s for _, s in app[HITS]] == ["a", "b"]
    # a change that keeps the pixels (the name) keeps the entries
    assert (await api.patch(f"/servers/{sid}", json={"name": "renamed"})).status == 200
    resp = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    assert resp.headers["X-Cache"] == "HIT"


async def test_tokens_and_keys_stay_out_of_the_access_log(caplog):
    from proxy.accesslog import redact_query

    assert redact_query("/servers/a/tiles/1/0/0?token=abc.1.sig&x=1") == (
        "/servers/a/tiles/1/0/0?token=***&x=1"
    )
    assert "k3y" not in redact_query("/x?api_key=k3y&apikey=k3y&key=k3y")
    assert logging.getLogger("aiohttp.access")  # the logger the class writes to
