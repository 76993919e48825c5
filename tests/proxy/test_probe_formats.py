"""Test-connection preview formats: ?format=, the body's format, Accept; pixels in place in each."""

from __future__ import annotations

import base64
import io

import attrs
import numpy as np
import pytest
from PIL import Image

from proxy.app import create_app
from proxy.config import load_settings
from tests.conftest import API_KEY
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected, preview_grid
from tests.upstreams.xyz import xyz_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 256}
# 0.05 deg east the preview runs past the ground truth's east edge: part of it is empty.
EDGE = {**PLACE, "lon": CENTER_LON + 0.05}
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def server(base: str) -> dict:
    return {"type": "xyz", "name": "t", "url": base + "/a/tiles/{z}/{x}/{y}.png"}


def pixels(data: bytes, media_type: str) -> np.ndarray:
    """(4, h, w) RGBA by an independent decoder, checking the bytes are ``media_type``."""
    image = Image.open(io.BytesIO(data))
    assert image.format == PIL_FORMATS[media_type]
    return np.asarray(image.convert("RGBA")).transpose(2, 0, 1)


@pytest.mark.parametrize(
    ("query", "accept", "media_type"),
    [
        ("?format=png", None, "image/png"),
        ("?format=jpeg", None, "image/jpeg"),
        ("?format=webp", None, "image/webp"),
        ("?format=auto", None, "image/jpeg"),  # opaque
        ("", "image/webp", "image/webp"),
        ("", "image/png;q=0.5, image/jpeg", "image/jpeg"),
        ("", "text/html, image/*;q=0.8", "image/jpeg"),
        ("?format=png", "image/jpeg", "image/png"),  # the query wins
    ],
)
async def test_preview_image_in_each_format_lands_in_place(
    api, serve, renderer, ground_truth, query, accept, media_type
):
    base = await serve(xyz_app(renderer))
    headers = {"Accept": accept} if accept else {}
    resp = await api.post(
        "/servers/test" + query, json={"server": server(base), **PLACE}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == media_type
    rgba = pixels(await resp.read(), media_type)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    assert_pixels_match(rgba, expected(ground_truth, output))


@pytest.mark.parametrize(
    ("body_format", "media_type"),
    [(None, "image/jpeg"), ("auto", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp")],
)
async def test_json_preview_in_the_body_format(
    api, serve, renderer, ground_truth, body_format, media_type
):
    base = await serve(xyz_app(renderer))
    ask = {"server": server(base), **PLACE, **({"format": body_format} if body_format else {})}
    resp = await api.post("/servers/test", json=ask, headers={"Accept": "application/json"})
    assert resp.status == 200 and resp.content_type == "application/json"
    preview = (await resp.json())["preview"]
    assert preview["media_type"] == media_type
    rgba = pixels(base64.b64decode(preview["base64"]), media_type)
    assert_pixels_match(
        rgba, expected(ground_truth, preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256))
    )


async def test_auto_is_png_where_the_preview_has_no_data(api, serve, renderer, ground_truth):
    base = await serve(xyz_app(renderer))
    resp = await api.post("/servers/test?format=auto", json={"server": server(base), **EDGE})
    assert resp.status == 200 and resp.content_type == "image/png"
    rgba = pixels(await resp.read(), "image/png")
    assert (rgba[3] == 0).any() and (rgba[3] == 255).any()
    oracle = expected(ground_truth, preview_grid(CENTER_LAT, EDGE["lon"], 10.0, 256))
    covered = rgba[3] == 255
    assert np.abs(rgba[:3].astype(int) - oracle)[:, covered].mean() < 3


async def test_unknown_format_is_refused(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    resp = await api.post("/servers/test?format=tiff", json={"server": server(base), **PLACE})
    assert resp.status == 422
    assert "format" in str(await resp.json())
    resp = await api.post("/servers/test", json={"server": server(base), **PLACE, "format": "gif"})
    assert resp.status == 422


async def test_jpeg_quality_is_a_setting(aiohttp_client, settings, serve, renderer):
    base = await serve(xyz_app(renderer))
    sizes = []
    for quality in (20, 95):
        app = create_app(attrs.evolve(settings, jpeg_quality=quality))
        client = await aiohttp_client(app, headers={"X-API-Key": API_KEY})
        resp = await client.post(
            "/servers/test?format=jpeg", json={"server": server(base), **PLACE}
        )
        assert resp.status == 200
        sizes.append(len(await resp.read()))
    assert sizes[0] < sizes[1] / 2


@pytest.mark.parametrize("field", ["jpeg_quality", "png_compression", "webp_quality"])
def test_encoding_settings_are_bounded(tmp_path, field):
    with pytest.raises(ValueError, match=field):
        load_settings(env={}, data_dir=tmp_path, **{field: 500})
