"""Image routes that answer before the library reads anything: catalog views, bad input,
tokens, the GDAL description and TileJSON. Pixel reads are in test_images_reads.py."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from proxy.keys import SERVICES
from proxy.tokens import image_scope
from tests.proxy.image_helpers import SIZE, store_image
from tests.proxy.tile_helpers import add_server

XYZ = {"type": "xyz", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png", "resolution": 3.0}


@pytest.fixture
async def image(api):
    server_id = await add_server(api, XYZ)
    return await store_image(api, server_id)


async def error_of(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["hint"]
    return body["error"]


async def test_images_are_listed_shown_and_deleted(api, image):
    resp = await api.get("/images")
    assert [i["id"] for i in (await resp.json())["images"]] == [image.id]
    view = await (await api.get(f"/images/{image.id}")).json()
    assert (view["width"], view["height"], view["bands"], view["dtype"]) == (SIZE, SIZE, 4, "uint8")
    assert view["crs"] == "EPSG:3857" and view["server_id"] == image.server_id
    left, bottom, right, top = view["bounds"]
    assert right - left == pytest.approx(SIZE * image.transform[0])
    assert top - bottom == pytest.approx(SIZE * image.transform[0])
    assert view["aois"]["type"] == "FeatureCollection"
    assert 6.6 < view["bounds_lonlat"][0] < 6.63 < view["bounds_lonlat"][2] < 6.66
    assert (await api.delete(f"/images/{image.id}")).status == 204
    assert (await error_of(await api.get(f"/images/{image.id}"), 404))["code"] == "image_not_found"
    assert (await api.delete(f"/images/{image.id}")).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/images/nope",
        "/images/nope/window/0,0,10,10.png",
        "/images/nope/bbox/6.6,46.5,6.7,46.6.tif",
        "/images/nope/preview.png",
        "/images/nope/tiles/15/17000/11600.png",
        "/images/nope/tilejson.json",
        "/images/nope/gdal.xml",
    ],
)
async def test_an_unknown_image_is_a_404(api, path):
    assert (await error_of(await api.get(path), 404))["code"] == "image_not_found"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("window/0,0,10,10.gif", "unsupported_format"),
        ("window/500,0,20,10.png", "window_outside"),  # partly outside
        ("window/600,600,10,10.png", "window_outside"),  # fully outside
        ("window/0,0,0,10.png", "invalid_size"),
        ("window/-1,0,10,10.png", "invalid_size"),
        ("window/0,0,10,x.png", "invalid_size"),
        ("window/0,0,10,10.png?out_width=0", "invalid_size"),
        ("window/0,0,10,10.png?out_width=1000000", "invalid_size"),
        ("bbox/6.7,46.5,6.6,46.6.png", "invalid_bbox"),
        ("bbox/6.6,46.5,nan,46.6.png", "invalid_bbox"),
        ("bbox/6.6,46.5,6.7,46.6.png?crs=EPSG:999999", "unknown_crs"),
        ("bbox/6.6,46.5,6.7,46.6.png?width=-3", "invalid_size"),
        ("bbox/6.6,46.5,6.7,46.6.png?resolution=0", "invalid_size"),
        ("preview.webp", "unsupported_format"),
        ("preview.png?max_size=100000", "invalid_size"),
        ("window/0,0,10,10.png?detector_resolution=-1", "bad_request"),
        ("tiles/25/0/0.png", "invalid_tile"),
        ("tiles/2/4/0.png", "invalid_tile"),
    ],
)
async def test_bad_reads_are_400_with_a_precise_code(api, image, path, code):
    assert (await error_of(await api.get(f"/images/{image.id}/{path}"), 400))["code"] == code


async def test_an_image_whose_server_was_deleted_is_410(api, image):
    assert (await api.delete(f"/servers/{image.server_id}")).status == 204
    for path in ("window/0,0,10,10.png", "preview.png", "gdal.xml"):
        error = await error_of(await api.get(f"/images/{image.id}/{path}"), 410)
        assert error["code"] == "server_deleted" and error["server_id"] == image.server_id
    assert (await api.get(f"/images/{image.id}")).status == 200  # its metadata stays


async def test_imports_refuse_unknown_servers_and_invalid_bodies(api, image):
    body = {"server_id": image.server_id, "name": "n", "aois": image.aois}
    error = await error_of(await api.post("/imports/plan", json={**body, "server_id": "nope"}), 404)
    assert error["code"] == "not_found"
    for bad in ({**body, "aois": "x"}, {**body, "resolution": 0}, {**body, "extra": 1}, []):
        assert (await error_of(await api.post("/imports", json=bad), 422))[
            "code"
        ] == "invalid_input"


async def test_the_gdal_description_covers_the_image_on_tile_boundaries(api, image):
    resp = await api.get(f"/images/{image.id}/gdal.xml")
    assert resp.status == 200 and resp.content_type == "application/xml"
    assert resp.headers["Cache-Control"] == "no-store"
    root = ElementTree.fromstring(await resp.text())
    url = root.findtext("Service/ServerUrl")
    assert f"/images/{image.id}/tiles/${{z}}/${{x}}/${{y}}.png?token=image:{image.id}." in url
    window = {child.tag: child.text for child in root.find("DataWindow")}
    z = int(window["TileLevel"])
    assert z == 15  # the image's pixels are zoom-15 pixels
    tile = 2 * 20037508.342789244 / 2**z
    left, top = float(window["UpperLeftX"]), float(window["UpperLeftY"])
    right, bottom = float(window["LowerRightX"]), float(window["LowerRightY"])
    view = await (await api.get(f"/images/{image.id}")).json()
    il, ib, ir, it = view["bounds"]
    assert left <= il and top >= it and right >= ir and bottom <= ib
    assert int(window["SizeX"]) == round((right - left) / tile) * 256
    overviews = int(root.findtext("OverviewCount"))
    step = 2**overviews
    assert int(window["TileX"]) % step == 0 and int(window["TileY"]) % step == 0
    assert left == pytest.approx(-20037508.342789244 + int(window["TileX"]) * tile)
    assert root.findtext("BandsCount") == "4"


async def test_image_tokens_open_that_image_tiles_only(api, image, aiohttp_client):
    services = api.server.app[SERVICES]
    anonymous = await aiohttp_client(api.server)
    far = f"/images/{image.id}/tiles/10/0/0.png"  # far from the image: empty, nothing read
    assert (await anonymous.get(far)).status == 401
    token, _ = services.tokens.mint(image_scope(image.id), 600)
    resp = await anonymous.get(far, params={"token": token})
    assert resp.status == 200 and resp.headers["X-Tile-Empty"] == "true"
    server_token, _ = services.tokens.mint(image.server_id, 600)
    assert (await anonymous.get(far, params={"token": server_token})).status == 200
    # an image token opens neither the server's tiles nor another image
    other = await store_image(api, image.server_id, "other")
    resp = await anonymous.get(f"/images/{other.id}/tiles/10/0/0.png", params={"token": token})
    assert resp.status == 401
    resp = await anonymous.get(f"/servers/{image.server_id}/tiles/0/0/0", params={"token": token})
    assert resp.status == 401


async def test_image_tilejson_carries_the_token(api, image):
    resp = await api.get(f"/images/{image.id}/tilejson.json", params={"token": "t.1.x"})
    doc = await resp.json()
    assert doc["maxzoom"] == 15 and doc["tiles"][0].endswith(".png?token=t.1.x")
    lon, lat = doc["center"][:2]
    assert 6.6 < lon < 6.66 and 46.5 < lat < 46.54
