"""The XYZ adapter against a real loopback tile server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiohttp import web

from proxy.upstream.registry import parse_config
from proxy.upstream.xyz import XYZSource, quadkey, tile_url
from streaming.encode import encode_png
from streaming.errors import SourceAuthError, SourceWrongContentType
from streaming.grid import web_mercator_tms
from streaming.reader import SourceReader, preview_grid
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.xyz import HITS, xyz_app

CENTER_TILE = TileIndex(*web_mercator_tms().tile(CENTER_LON, CENTER_LAT, 14))


def xyz(url: str, **extra):
    return parse_config({"type": "xyz", "name": "t", "url": url, **extra})


def test_template_placeholders():
    tile = TileIndex(3, 5, 4)
    assert tile_url("http://h/{z}/{x}/{y}", tile) == "http://h/4/3/5"
    assert tile_url("http://h/{z}/{x}/{-y}", tile) == "http://h/4/3/10"
    assert tile_url("http://{s}.h/{q}", tile, "b") == f"http://b.h/{quadkey(tile)}"
    assert quadkey(TileIndex(3, 5, 3)) == "213"


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/{s}/tiles/{z}/{x}/{y}.png", {"subdomains": ["a", "b", "c"]}),
        ("/tms/{z}/{x}/{-y}.png", {}),
        ("/q/{q}.png", {}),
        ("/a/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png", {}),
    ],
    ids=["subdomains", "tms-rows", "quadkey", "encoded-placeholders"],
)
async def test_xyz_pixels_land_on_the_ground_truth(
    serve, renderer, ground_truth, upstream_ctx, path, extra
):
    app = xyz_app(renderer)
    base = await serve(app)
    source = XYZSource(xyz(base + path, **extra), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    if "subdomains" in extra:
        assert {s for _, s in app[HITS]} == {"a", "b", "c"}


async def test_512px_jpeg_tiles(serve, renderer, ground_truth, upstream_ctx):
    base = await serve(xyz_app(renderer, tile_size=512))
    source = XYZSource(xyz(base + "/a/tiles/{z}/{x}/{y}.jpeg", tile_size=512), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 13
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)


async def test_reads_finer_than_max_zoom_use_the_max_zoom(
    serve, renderer, ground_truth, upstream_ctx
):
    base = await serve(xyz_app(renderer))
    source = XYZSource(xyz(base + "/a/tiles/{z}/{x}/{y}.png", max_zoom=13), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 5.0, 128)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 13
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=12)


async def test_headers_are_sent_and_auth_failure_is_reported(serve, renderer, upstream_ctx):
    base = await serve(xyz_app(renderer))
    good = XYZSource(
        xyz(base + "/auth/{z}/{x}/{y}.png", headers={"X-Api-Key": "sesame"}), upstream_ctx
    )
    assert await good.fetch_tile(CENTER_TILE) is not None
    bad = XYZSource(
        xyz(base + "/auth/{z}/{x}/{y}.png", headers={"X-Api-Key": "nope"}), upstream_ctx
    )
    with pytest.raises(SourceAuthError):
        await bad.fetch_tile(CENTER_TILE)


async def test_html_instead_of_a_tile_is_an_error(serve, renderer, upstream_ctx):
    base = await serve(xyz_app(renderer))
    source = XYZSource(xyz(base + "/html/{z}/{x}/{y}"), upstream_ctx)
    with pytest.raises(SourceWrongContentType, match="text/html"):
        await source.fetch_tile(TileIndex(1, 1, 2))


async def test_missing_tile_is_none(serve, renderer, upstream_ctx):
    base = await serve(xyz_app(renderer))
    source = XYZSource(xyz(base + "/a/tiles/{z}/{x}/{y}.png"), upstream_ctx)
    assert await source.fetch_tile(TileIndex(0, 0, 3)) is None


def slow_app(delay: float) -> tuple[web.Application, dict[str, int]]:
    """Answers a small PNG after ``delay`` s and records the most requests in flight."""
    stats = {"inflight": 0, "max": 0, "count": 0}
    tile = encode_png(np.full((4, 256, 256), 90, dtype=np.uint8))

    async def handle(request: web.Request) -> web.Response:
        stats["inflight"] += 1
        stats["count"] += 1
        stats["max"] = max(stats["max"], stats["inflight"])
        await asyncio.sleep(delay)
        stats["inflight"] -= 1
        return web.Response(body=tile, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{z}/{x}/{y}.png", handle)
    return app, stats


async def test_max_concurrency_is_shared_by_every_source_of_a_server(serve, upstream_ctx):
    app, stats = slow_app(0.05)
    base = await serve(app)
    config = xyz(base + "/{z}/{x}/{y}.png", max_concurrency=2)
    sources = [XYZSource(config, upstream_ctx) for _ in range(3)]
    tiles = [TileIndex(x, 0, 4) for x in range(12)]
    await asyncio.gather(*(sources[i % 3].fetch_tile(t) for i, t in enumerate(tiles)))
    assert stats["count"] == 12 and stats["max"] == 2


async def test_rate_limit_spaces_requests(serve, upstream_ctx):
    app, stats = slow_app(0)
    base = await serve(app)
    source = XYZSource(xyz(base + "/{z}/{x}/{y}.png", rate_limit=20), upstream_ctx)
    started = time.perf_counter()
    await asyncio.gather(*(source.fetch_tile(TileIndex(x, 0, 5)) for x in range(30)))
    # 20 at once (the bucket), then 10 more at 20/s: about half a second
    assert time.perf_counter() - started >= 0.4
    assert stats["count"] == 30
