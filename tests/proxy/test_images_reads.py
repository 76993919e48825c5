"""Imports and reads through the HTTP API against the ground truth (needs ``streaming.image``).

Skipped until the library half of issue 7 (``streaming.aoi``, ``streaming.image``,
``streaming.guard``) is merged; written against its agreed API.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import rasterio
import rasterio.warp
import rasterio.windows
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from streaming.mosaic import Grid
from tests.groundtruth import CENTER_LAT, CENTER_LON, MERCATOR, assert_pixels_match, expected
from tests.proxy.image_helpers import AOI
from tests.proxy.tile_helpers import add_server
from tests.upstreams.xyz import PATHS, xyz_app

pytest.importorskip("streaming.image")

RES = 4.777314267823516 * 0.6883  # about zoom-15 pixels on the ground


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    app = xyz_app(renderer)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def imported(api, upstream):
    app, base = upstream
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    server_id = await add_server(api, {"type": "xyz", "url": url, "resolution": RES})
    body = {"server_id": server_id, "name": "gt", "aois": AOI}
    resp = await api.post("/imports", json=body)
    assert resp.status == 201, await resp.text()
    return app, await resp.json()


def grid_of(resp) -> Grid:
    a, b, c, d, e, f = (float(v) for v in resp.headers["X-Transform"].split(","))
    assert resp.headers["X-CRS"] == "EPSG:3857"
    return Grid(MERCATOR, Affine(a, b, c, d, e, f), 0, 0)


async def test_the_plan_answers_before_anything_is_fetched(api, upstream):
    app, base = upstream
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    server_id = await add_server(api, {"type": "xyz", "url": url, "resolution": RES})
    resp = await api.post("/imports/plan", json={"server_id": server_id, "name": "p", "aois": AOI})
    plan = await resp.json()
    assert resp.status == 200, plan
    assert plan["crs"] == "EPSG:3857" and plan["pixels"] == plan["width"] * plan["height"]
    assert plan["zoom"] == 15 and plan["requests"] > 0 and plan["bytes"] > 0
    assert plan["cells"]["count"] >= 1
    assert app[PATHS] == []  # nothing fetched


async def test_a_window_lands_on_the_ground_truth_and_a_second_read_is_free(
    api, imported, ground_truth
):
    app, image = imported
    path = f"/images/{image['id']}/window/100,100,256,256.npy"
    resp = await api.get(path)
    assert resp.status == 200, await resp.text()
    rgba = np.load(io.BytesIO(await resp.read()))
    g = grid_of(resp)
    oracle = expected(ground_truth, Grid(MERCATOR, g.transform, 256, 256))
    assert_pixels_match(rgba, oracle)
    before = len(app[PATHS])
    again = await api.get(path)
    assert again.status == 200 and again.headers["X-Upstream-Requests"] is not None
    assert len(app[PATHS]) == before  # every tile came from the cache
    # pasted from the decoded tiles kept in memory: the same pixels, byte for byte
    np.testing.assert_array_equal(np.load(io.BytesIO(await again.read())), rgba)


async def test_a_large_answer_is_streamed_whole(api, imported, ground_truth):
    """A body past one write (ANSWER_CHUNK) goes out in parts: all of it, sized up front."""
    from proxy.handlers.images import ANSWER_CHUNK

    _, image = imported
    w, h = image["width"], 600  # more than one chunk, and not a multiple of it
    assert 4 * w * h > ANSWER_CHUNK and (4 * w * h) % ANSWER_CHUNK
    resp = await api.get(f"/images/{image['id']}/window/0,0,{w},{h}.npy")
    assert resp.status == 200, await resp.text()
    body = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(body)
    rgba = np.load(io.BytesIO(body))
    assert rgba.shape == (4, h, w)
    inside = rgba[3] > 0
    assert 0 < inside.sum() < inside.size  # the AOI cuts through it: the mask was drawn
    # a lon/lat box is a rectangle in Web Mercator: compare the pixels inside it
    rows, cols = np.flatnonzero(inside[:, w // 2]), np.flatnonzero(inside[h // 2])
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert inside[box].sum() == inside.sum()
    oracle = expected(ground_truth, Grid(MERCATOR, grid_of(resp).transform, w, h))
    assert_pixels_match(rgba[(slice(None), *box)], oracle[(slice(None), *box)])


async def test_a_decimated_read_fetches_coarse_tiles(api, imported):
    app, image = imported
    w, h = image["width"], image["height"]
    resp = await api.get(f"/images/{image['id']}/window/0,0,{w},{h}.png?out_width=64")
    assert resp.status == 200, await resp.text()
    zooms = {int(p.split("/")[3]) for p in app[PATHS]}
    assert zooms and max(zooms) <= 13


async def test_the_geotiff_is_georeferenced_and_masked(api, imported):
    _, image = imported
    resp = await api.get(f"/images/{image['id']}/bbox/6.62,46.51,6.64,46.53.tif?width=200")
    assert resp.status == 200, await resp.text()
    with MemoryFile(await resp.read()) as mem, mem.open() as src:
        assert src.crs == MERCATOR and src.count == 3
        assert src.dataset_mask().max() == 255


async def test_the_guard_refuses_before_any_upstream_request_and_counts(api, imported):
    app, image = imported
    before = len(app[PATHS])
    resp = await api.get(
        f"/images/{image['id']}/window/0,0,256,256.png",
        headers={"X-Detector-Resolution": "30"},
    )
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "resolution_too_high", body
    assert "/duplicate" in body["error"]["hint"] and "POST /imports" in body["error"]["hint"]
    assert len(app[PATHS]) == before
    metrics = await (await api.get("/metrics")).text()
    assert f'imagery_proxy_guard_refusals_total{{server="{image["server_id"]}"}} 1.0' in metrics
    ok = await api.get(
        f"/images/{image['id']}/window/0,0,256,256.png?out_width=32&detector_resolution=30"
    )
    assert ok.status == 200


async def test_gdal_opens_the_description_and_reads_the_ground_truth(
    api, imported, ground_truth, tmp_path
):
    _, image = imported
    xml = await (await api.get(f"/images/{image['id']}/gdal.xml")).text()
    path = tmp_path / "image.xml"
    path.write_text(xml)

    def read() -> tuple[np.ndarray, Affine]:
        with rasterio.open(path) as src:
            window = (
                rasterio.windows.from_bounds(
                    *rasterio.warp.transform_bounds(
                        "EPSG:4326",
                        src.crs,
                        CENTER_LON - 0.004,
                        CENTER_LAT - 0.003,
                        CENTER_LON + 0.004,
                        CENTER_LAT + 0.003,
                    ),
                    src.transform,
                )
                .round_offsets()
                .round_lengths()
            )
            return src.read(window=window), src.window_transform(window)

    data, transform = await asyncio.get_running_loop().run_in_executor(None, read)
    oracle = expected(ground_truth, Grid(MERCATOR, transform, data.shape[2], data.shape[1]))
    assert_pixels_match(data, oracle)


async def test_a_bbox_without_a_size_is_the_images_own_pixels_covering_it(
    api, imported, ground_truth
):
    """Snapped outward to the image's pixels: its pixel size, its pixel edges, the ground truth."""
    _, image = imported
    west, south, east, north = 6.625, 46.515, 6.635, 46.525
    resp = await api.get(f"/images/{image['id']}/bbox/{west},{south},{east},{north}.npy")
    assert resp.status == 200, await resp.text()
    bands = np.load(io.BytesIO(await resp.read()))
    got = grid_of(resp).transform
    own = Affine(*image["transform"][:6])
    assert got.a == pytest.approx(own.a) and got.e == pytest.approx(own.e)  # the image's pixels
    col, row = ~own * (got.c, got.f)
    assert col == pytest.approx(round(col), abs=1e-6) and row == pytest.approx(round(row), abs=1e-6)
    (left, right), (bottom, top) = rasterio.warp.transform(
        "EPSG:4326", MERCATOR, [west, east], [south, north]
    )
    _, height, width = bands.shape
    assert got.c <= left < got.c + own.a and got.f >= top > got.f + own.e  # snapped outward
    assert got.c + width * own.a >= right > got.c + (width - 1) * own.a
    assert got.f + height * own.e <= bottom < got.f + (height - 1) * own.e
    oracle = expected(ground_truth, Grid(MERCATOR, got, width, height))
    assert_pixels_match(bands, oracle)
