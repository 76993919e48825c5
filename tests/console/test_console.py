"""The operator console in Chromium, against the live service and a loopback XYZ upstream.

One browser and one page for the module: the tests run in order as an operator would
(add a server, test it, import, look at the image), each leaving a screenshot.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

from tests.console.conftest import Session
from tests.console.live import API_KEY
from tests.groundtruth import CENTER_LAT, CENTER_LON

AUTH = {"X-API-Key": API_KEY}
RESOLUTION = 20.0  # m/px: a small import over the ground truth


def shot(session: Session, shots: Path, name: str) -> None:
    session.page.screenshot(path=str(shots / f"{name}.png"))


def test_the_page_is_public_static_and_same_origin(live: Any) -> None:
    page = requests.get(live.api + "/console/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    module = requests.get(live.api + "/console/vendor/maplibre-gl/maplibre-gl.mjs", timeout=10)
    assert module.status_code == 200 and module.headers["Content-Type"] == "text/javascript"
    assert requests.get(live.api + "/console", allow_redirects=False, timeout=10).status_code == 302
    for path in ("/console/..%2f__init__.py", "/console/%2e%2e/__init__.py", "/console/nope.js"):
        missing = requests.get(live.api + path, timeout=10)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "not_found"
    # the API behind it still needs the key
    assert requests.get(live.api + "/servers", timeout=10).status_code == 401


def test_a_wrong_key_is_asked_again_with_the_error(session: Session, shots: Path) -> None:
    page = session.page
    page.goto(f"{session.live.api}/console/#servers")
    page.fill("#key-input", "wrong")
    page.click("#key-form button")
    page.wait_for_selector("#key-error:has-text('a valid API key is required')")
    shot(session, shots, "0-key")
    page.fill("#key-input", API_KEY)
    page.click("#key-form button")
    session.wait_screen("servers")
    assert "No server yet" in page.inner_text("#panel")


def test_add_a_server_and_see_its_tiles(session: Session, shots: Path) -> None:
    session.open("new")
    page = session.page
    page.select_option("#srv-type", "xyz")
    page.fill("#srv-name", "Ground truth")
    # pasted with URL-encoded placeholders, as the guide warns: the service decodes them
    page.fill("#srv-url", session.live.upstream + "/a/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png")
    page.fill("#srv-resolution", str(RESOLUTION))
    page.click("form button[type=submit]")
    session.wait_screen("server")
    servers = requests.get(session.live.api + "/servers", headers=AUTH, timeout=10).json()
    (server,) = servers["servers"]
    assert server["url"].endswith("/a/tiles/{z}/{x}/{y}.png")
    assert page.input_value("#edit-url") == server["url"]
    # the map asks the service for tiles with a tile token, never the API key
    page.wait_for_function(
        "() => consoleMap.getSource('server-tiles') && consoleMap.areTilesLoaded()"
    )
    tiles = [u for u in session.requests if f"/servers/{server['id']}/tiles/" in u]
    assert tiles and all("token=" in u and API_KEY not in u for u in tiles)
    shot(session, shots, "1-server")


def test_test_connection_by_clicking_the_map(session: Session, shots: Path) -> None:
    page = session.page
    server_id = page.evaluate("location.hash").split("/")[1]
    session.go(f"test/{server_id}")
    page.evaluate(f"consoleMap.jumpTo({{center: [{CENTER_LON}, {CENTER_LAT}], zoom: 12}})")
    session.click_map(CENTER_LON, CENTER_LAT)
    assert abs(float(page.input_value("#probe-lat")) - CENTER_LAT) < 0.01
    assert abs(float(page.input_value("#probe-lon")) - CENTER_LON) < 0.01
    page.fill("#probe-size", "128")
    page.click("form button[type=submit]")
    preview = page.wait_for_selector("#preview")
    src = preview.get_attribute("src")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert image.size == (128, 128)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # imagery, not a blank tile
    # the map's tiles filled the shared cache: the preview needed no upstream request
    result = page.inner_text("#probe-result")
    assert "Upstream requests" in result and "No upstream request was made." in result
    shot(session, shots, "2-test-connection")


def test_an_invalid_server_shows_the_error_message_and_hint(session: Session) -> None:
    page = session.page
    session.go("new")
    page.select_option("#srv-type", "xyz")
    page.fill("#srv-name", "Broken")
    page.fill("#srv-url", session.live.upstream + "/tiles/{variant}/{z}/{x}/{y}")
    page.click("form button[type=submit]")
    alert = page.wait_for_selector("[role=alert]")
    assert "invalid_input" in alert.inner_text()


def test_draw_an_aoi_by_clicks_and_confirm_the_plan(session: Session, shots: Path) -> None:
    page = session.page
    (server,) = requests.get(session.live.api + "/servers", headers=AUTH, timeout=10).json()[
        "servers"
    ]
    session.go(f"import/{server['id']}")
    page.evaluate(f"consoleMap.jumpTo({{center: [{CENTER_LON}, {CENTER_LAT}], zoom: 13}})")
    d = 0.01
    corners = [
        (CENTER_LON - d, CENTER_LAT - d),
        (CENTER_LON + d, CENTER_LAT - d),
        (CENTER_LON + d, CENTER_LAT + d),
        (CENTER_LON - d, CENTER_LAT + d),
        (CENTER_LON - d, CENTER_LAT - d),  # the first corner again closes the polygon
    ]
    for lon, lat in corners:
        session.click_map(lon, lat)
        page.wait_for_timeout(100)
    page.fill("#imp-name", "Lausanne")
    page.click("form button[type=submit]")
    page.wait_for_selector("#plan")
    plan = page.inner_text("#plan")
    # the plan the API gives for the same AOI, shown before anything starts
    aoi = {"type": "Polygon", "coordinates": [[list(c) for c in corners]]}
    expected = requests.post(
        session.live.api + "/imports/plan",
        json={"server_id": server["id"], "name": "x", "aois": aoi},
        headers=AUTH,
        timeout=30,
    ).json()
    assert f"{expected['width']:,} × {expected['height']:,} px" in plan
    assert f"{expected['requests']:,}" in plan
    assert requests.get(session.live.api + "/images", headers=AUTH, timeout=10).json() == {
        "images": []
    }
    shot(session, shots, "3-import-plan")
    page.click("#confirm-import")
    session.wait_screen("image")
    (image,) = requests.get(session.live.api + "/images", headers=AUTH, timeout=10).json()["images"]
    assert image["name"] == "Lausanne" and image["resolution"] == RESOLUTION
    page.wait_for_function(
        "() => consoleMap.getSource('image-tiles') && consoleMap.areTilesLoaded()"
    )
    shot(session, shots, "4-image")


def test_the_resolution_guard_fix_is_one_action(session: Session, shots: Path) -> None:
    page = session.page
    (image,) = requests.get(session.live.api + "/images", headers=AUTH, timeout=10).json()["images"]
    page.fill("#img-detector", "200")
    page.click("text=Check a full-resolution read")
    alert = page.wait_for_selector("[role=alert]:has-text('resolution_too_high')")
    assert "duplicate the server" in alert.inner_text()
    shot(session, shots, "5-guard")
    page.click("#guard-fix")
    page.wait_for_function(
        f"() => location.hash.startsWith('#image/') && !location.hash.endsWith({image['id']!r})"
    )
    session.wait_screen("image")
    images = requests.get(session.live.api + "/images", headers=AUTH, timeout=10).json()["images"]
    fixed = next(i for i in images if i["id"] != image["id"])
    assert fixed["resolution"] == 200.0 and fixed["aois"] == image["aois"]
    copy = requests.get(
        f"{session.live.api}/servers/{fixed['server_id']}", headers=AUTH, timeout=10
    )
    assert copy.json()["resolution"] == 200.0


def test_screens_pass_axe_and_fit_a_phone(session: Session, shots: Path) -> None:
    page = session.page
    for screen in ("servers", "new", "images"):
        session.go(screen)
        assert session.axe() == [], screen
    page.set_viewport_size({"width": 390, "height": 844})
    for screen in ("servers", "images"):
        session.go(screen)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, screen
        shot(session, shots, f"6-phone-{screen}")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_no_request_left_the_origin_and_no_script_failed(session: Session) -> None:
    assert session.requests
    assert session.foreign_requests() == []
    assert session.errors == []
