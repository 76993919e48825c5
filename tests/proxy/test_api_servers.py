"""The server catalog API: CRUD, duplicate, validation, write-only credentials, auth."""

from __future__ import annotations

import aiohttp
import pytest

from proxy.app import create_app

XYZ = {"type": "xyz", "name": "Ortho", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png"}
SECRET = "s3cr3t-value-42"


async def create(api, config):
    resp = await api.post("/servers", json=config)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_create_list_read_edit_delete(api):
    created = await create(api, {**XYZ, "max_zoom": 18, "resolution": 0.6})
    assert created["type"] == "xyz" and created["max_zoom"] == 18 and created["id"]
    resp = await api.get("/servers")
    assert [s["id"] for s in (await resp.json())["servers"]] == [created["id"]]
    resp = await api.patch(f"/servers/{created['id']}", json={"resolution": 1.2})
    assert resp.status == 200 and (await resp.json())["resolution"] == 1.2
    resp = await api.get(f"/servers/{created['id']}")
    assert (await resp.json())["resolution"] == 1.2
    assert (await api.delete(f"/servers/{created['id']}")).status == 204
    resp = await api.get(f"/servers/{created['id']}")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_catalog_survives_a_restart(aiohttp_client, settings, api):
    created = await create(api, XYZ)
    await api.close()
    again = await aiohttp_client(create_app(settings), headers={"X-API-Key": "test-key"})
    resp = await again.get(f"/servers/{created['id']}")
    assert resp.status == 200 and (await resp.json())["name"] == "Ortho"


async def test_duplicate_with_overrides(api):
    original = await create(api, {**XYZ, "resolution": 0.3, "headers": {"X-Key": SECRET}})
    resp = await api.post(f"/servers/{original['id']}/duplicate", json={"resolution": 2.0})
    assert resp.status == 201
    copy = await resp.json()
    assert copy["id"] != original["id"]
    assert copy["resolution"] == 2.0 and copy["name"] == "Ortho (copy)"
    assert copy["url"] == original["url"]
    # the secret came along (masked in the view) and the original is untouched
    assert copy["headers"] == {"X-Key": "***"}
    resp = await api.get(f"/servers/{original['id']}")
    assert (await resp.json())["resolution"] == 0.3


async def test_credentials_are_write_only(api):
    arcgis = {
        "type": "arcgis",
        "name": "Esri",
        "url": "https://example.com/arcgis/rest/services/Imagery/ImageServer",
        "credentials": f"alice:{SECRET}",
    }
    created = await create(api, {**XYZ, "params": {"apikey": SECRET}, "headers": {"A": SECRET}})
    arc = await create(api, arcgis)
    for resp in [
        await api.get("/servers"),
        await api.get(f"/servers/{created['id']}"),
        await api.get(f"/servers/{arc['id']}"),
        await api.patch(f"/servers/{arc['id']}", json={"name": "Esri 2"}),
        await api.post(f"/servers/{created['id']}/duplicate"),
    ]:
        assert SECRET not in await resp.text()
    assert arc["credentials"] == "alice:***"
    # sending the masked value back keeps the stored secret
    resp = await api.patch(f"/servers/{created['id']}", json={"params": {"apikey": "***"}})
    assert resp.status == 200
    catalog = api.server.app
    from proxy.keys import SERVICES

    stored = await catalog[SERVICES].catalog.servers.get(created["id"])
    assert stored.config["params"] == {"apikey": SECRET}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"type": "tms", "name": "a", "url": "http://h/{z}/{x}/{y}"}, None),
        ({"type": "xyz", "name": "a", "url": "http://h/tiles.png"}, "url"),
        ({"type": "xyz", "name": "a", "url": "ftp://h/{z}/{x}/{y}"}, "url"),
        ({"type": "xyz", "name": "a", "url": "not a url {z}{x}{y}"}, "url"),
        ({**XYZ, "resolution": -1}, "resolution"),
        ({**XYZ, "resolution": "fine"}, "resolution"),
        ({**XYZ, "tile_size": 300}, "tile_size"),
        ({**XYZ, "url": "http://{s}.h/{z}/{x}/{y}"}, "config"),
        ({**XYZ, "min_zoom": 10, "max_zoom": 5}, "config"),
        ({"type": "xyz", "url": "http://h/{z}/{x}/{y}"}, "name"),
        ({**XYZ, "colour": "red"}, "colour"),
        ({"type": "arcgis", "name": "a", "url": "https://h/arcgis/rest/services/x"}, "url"),
        (
            {
                "type": "arcgis",
                "name": "a",
                "url": "https://h/x/MapServer",
                "credentials": "nopass",
            },
            "credentials",
        ),
    ],
)
async def test_invalid_configs_are_refused_with_422(api, config, field):
    resp = await api.post("/servers", json=config)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "invalid_input"
    if field is not None:
        assert field in [e["field"] for e in body["error"]["errors"]], body
    assert (await (await api.get("/servers")).json())["servers"] == []


async def test_validation_errors_never_echo_secrets(api):
    resp = await api.post(
        "/servers", json={**XYZ, "url": "http://h/nothing", "headers": {"Authorization": SECRET}}
    )
    assert resp.status == 422 and SECRET not in await resp.text()


async def test_malformed_json_is_a_400(api):
    resp = await api.post(
        "/servers", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"


async def test_requests_without_a_valid_key_get_401(api):
    async with aiohttp.ClientSession() as anonymous:
        for headers in [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}]:
            resp = await anonymous.get(api.make_url("/servers"), headers=headers)
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
        resp = await anonymous.get(
            api.make_url("/servers"), headers={"Authorization": "Bearer test-key"}
        )
        assert resp.status == 200
        for path in ("/health", "/ready"):
            resp = await anonymous.get(api.make_url(path))
            assert resp.status == 200, path


async def test_unknown_route_is_a_json_404(api):
    resp = await api.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        f"https://h.example/{{z}}/{{x}}/{{y}}.png?access_token={SECRET}",
        f"https://h.example/{{z}}/{{x}}/{{y}}.png?style=a&key={SECRET}",
        f"https://h.example/{{z}}/{{x}}/{{y}}.png?signature={SECRET}&sig={SECRET}x",
        f"https://bob:{SECRET}@h.example/{{z}}/{{x}}/{{y}}.png",
    ],
    ids=["access_token", "key", "signature", "userinfo"],
)
async def test_credentials_inside_the_url_are_masked_and_kept(api, url):
    from proxy.keys import SERVICES

    created = await create(api, {**XYZ, "url": url})
    assert SECRET not in created["url"] and "***" in created["url"]
    for resp in [await api.get("/servers"), await api.get(f"/servers/{created['id']}")]:
        assert SECRET not in await resp.text()
    # the view sent back as is keeps the stored secret
    resp = await api.patch(f"/servers/{created['id']}", json={"url": created["url"]})
    assert resp.status == 200 and SECRET not in await resp.text()
    stored = await api.server.app[SERVICES].catalog.servers.get(created["id"])
    assert stored.config["url"] == url
    # a masked value moved to another host is not carried over: it must be sent again
    moved = created["url"].replace("h.example", "other.example")
    resp = await api.patch(f"/servers/{created['id']}", json={"url": moved})
    assert resp.status == 422 and "masked" in (await resp.json())["error"]["message"]


async def test_patch_arcgis_user_with_masked_password_keeps_the_password(api):
    from proxy.keys import SERVICES

    arcgis = {
        "type": "arcgis",
        "name": "Esri",
        "url": "https://example.com/arcgis/rest/services/Imagery/ImageServer",
        "credentials": f"alice:{SECRET}",
    }
    created = await create(api, arcgis)
    resp = await api.patch(f"/servers/{created['id']}", json={"credentials": "bob:***"})
    assert resp.status == 200 and (await resp.json())["credentials"] == "bob:***"
    stored = await api.server.app[SERVICES].catalog.servers.get(created["id"])
    assert stored.config["credentials"] == f"bob:{SECRET}"
    fresh = {**arcgis, "credentials": "carol:***"}
    resp = await api.post("/servers", json=fresh)
    assert resp.status == 422


async def test_zoom_offset_is_stored_and_shown(api):
    created = await create(api, {**XYZ, "zoom_offset": -1})
    assert created["zoom_offset"] == -1
    resp = await api.post("/servers", json={**XYZ, "zoom_offset": 99})
    assert resp.status == 422
