"""The WMS adapter against what real servers publish: huge CRS lists, WMS 1.1.0, EPSG:4326."""

from __future__ import annotations

import asyncio
import math
import time

from proxy.upstream.registry import parse_config
from proxy.upstream.wms import describe_wms, open_wms
from streaming.reader import SourceReader, preview_grid
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.wms import REQUESTS, wms_app
from tests.upstreams.wms_variants import many_crs_app

METRES_PER_DEGREE = math.pi * 6378137.0 / 180  # on Web Mercator's sphere


def wms_config(url: str, **extra):
    return parse_config({"type": "wms", "name": "t", "url": url, **extra})


def getmaps(app) -> list[dict[str, str]]:
    return [r for r in app[REQUESTS] if r.get("REQUEST", "").lower() == "getmap"]


async def test_health_answers_while_a_layer_with_6000_crs_is_tested(api, serve, renderer):
    place = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 256}
    # A running service has started its executor threads; a fresh one starts them
    # lazily, and starting one waits for the GIL. Warm up with a short CRS list.
    small = await serve(many_crs_app(renderer, 3))
    warm = {"type": "wms", "name": "small", "url": small + "/wms", "layers": ["truth"]}
    assert (await api.post("/servers/test", json={"server": warm, **place})).status == 200
    app = many_crs_app(renderer, 6000)
    base = await serve(app)
    server = {"type": "wms", "name": "geoserver", "url": base + "/wms", "layers": ["truth"]}
    probe = asyncio.ensure_future(api.post("/servers/test", json={"server": server, **place}))
    latencies = []
    while not probe.done():
        start = time.perf_counter()
        health = await api.get("/health")
        latencies.append(time.perf_counter() - start)
        assert health.status == 200
    resp = await probe
    body = await resp.json()
    assert resp.status == 200 and body["ok"] is True, body
    assert [r["CRS"] for r in getmaps(app)] == ["EPSG:3857"] * len(getmaps(app))
    assert len(latencies) >= 3, "the test connection ended before /health was asked"
    ordered = sorted(latencies)
    slow = [round(t * 1000) for t in ordered[-3:]]
    # The median, not p95: with a handful of samples p95 is the slowest one.
    assert ordered[len(ordered) // 2] < 0.1, f"the slowest /health took {slow} ms"
    # One answer may wait for C code that holds the GIL in a worker (expat screening
    # 6,000 elements: 300-600 ms on a loaded 2-core machine); parsing 6,000 CRSs on the
    # loop, as before, stalled it for 15-24 s. The bound tells the two apart under load.
    assert ordered[-1] < 2.0, f"the slowest /health took {slow} ms"


async def test_crs_choice_among_6000_by_name(serve, renderer, upstream_ctx):
    base = await serve(many_crs_app(renderer, 6000))
    source = await open_wms(wms_config(base + "/wms"), upstream_ctx)
    codes = [code for _, code in source.settings.crs_codes]
    assert codes[:2] == ["EPSG:3857", "EPSG:4326"] and len(codes) <= 8
    chosen = await open_wms(wms_config(base + "/wms", crs="EPSG:2056"), upstream_ctx)
    assert [code for _, code in chosen.settings.crs_codes] == ["EPSG:2056"]


async def test_wms_110_is_reported_and_spoken_as_110(serve, renderer, ground_truth, upstream_ctx):
    app = wms_app(renderer, versions=("1.1.0",))
    base = await serve(app)
    summary = await describe_wms(wms_config(base + "/wms"), upstream_ctx)
    assert summary["version"] == "1.1.0"
    source = await open_wms(wms_config(base + "/wms", crs="EPSG:4326"), upstream_ctx)
    assert source.settings.version == "1.1.0"
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    for request in getmaps(app):
        assert request["VERSION"] == "1.1.0" and request["SRS"] == "EPSG:4326"
        west, south, east, north = map(float, request["BBOX"].split(","))
        assert 6 < west < east < 7 and 46 < south < north < 47  # x,y order (lon first)


async def test_epsg_4326_requests_are_as_fine_as_asked_on_both_axes(
    serve, renderer, ground_truth, upstream_ctx
):
    app = wms_app(renderer, max_size=(4096, 4096))
    base = await serve(app)
    config = wms_config(base + "/wms", version="1.1.1", crs="EPSG:4326")
    source = await open_wms(config, upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    (request,) = getmaps(app)
    west, south, east, north = map(float, request["BBOX"].split(","))
    width, height = int(request["WIDTH"]), int(request["HEIGHT"])
    lat = (south + north) / 2
    ground_x = (east - west) / width * METRES_PER_DEGREE * math.cos(math.radians(lat))
    ground_y = (north - south) / height * METRES_PER_DEGREE
    # At least as fine as 10 m on both axes, and not wastefully finer.
    assert 9.9 < ground_x <= 10.0 * (1 + 1e-6)
    assert 9.9 < ground_y <= 10.0 * (1 + 1e-6)
