"""WMTS tile matrix sets real servers publish: CRS axis order, prefixed limits, bad documents.

Expected tiles come from the test's own arithmetic on the matrix definitions of
:mod:`tests.upstreams.wmts_sets`, never from the adapter.
"""

from __future__ import annotations

import math

import pytest
from pyproj import Transformer

from proxy.upstream.registry import parse_config
from proxy.upstream.wmts import describe_wmts, open_wmts
from streaming.reader import SourceReader, preview_grid
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.wmts_sets import GOOGLE, HITS, LIMITED_ZOOMS, wmts_sets_app

# layer -> (EPSG, top-left (easting, northing), cell size of each matrix)
GRIDS = {
    "swiss": (21781, (420000.0, 350000.0), [4000, 1000, 250, 100, 50, 20, 10, 5, 2.5, 2, 1.5, 1]),
    "poland": (2180, (-500000.0, -20000.0), [200, 100, 50, 20, 10, 5, 2.5, 1, 0.5]),
}


def wmts(url, **extra):
    return parse_config({"type": "wmts", "name": "w", "url": url, **extra})


async def start(serve, renderer, path="/WMTSCapabilities.xml"):
    app = wmts_sets_app(renderer)
    base = await serve(app)
    return app, base + path


def centre_tile(layer: str, zoom: int) -> tuple[int, int]:
    """(row, col) of the ground-truth centre at ``zoom``, by hand."""
    epsg, (east0, north0), cells = GRIDS[layer]
    east, north = Transformer.from_crs(4326, epsg, always_xy=True).transform(CENTER_LON, CENTER_LAT)
    span = cells[zoom] * 256
    return math.floor((north0 - north) / span), math.floor((east - east0) / span)


@pytest.mark.parametrize(
    ("layer", "resolution", "zoom"),
    [("swiss", 8.0, 7), ("swiss", 1.2, 11), ("poland", 8.0, 5), ("poland", 0.7, 8)],
    ids=["lv03-easting-first", "lv03-deep", "pl92-northing-first", "pl92-deep"],
)
async def test_projected_sets_by_axis_direction(
    serve, renderer, ground_truth, upstream_ctx, layer, resolution, zoom
):
    app, url = await start(serve, renderer)
    source = await open_wmts(wmts(url, layer=layer), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == zoom
    row, col = centre_tile(layer, zoom)
    hits = {(r, c) for _, matrix, r, c in app[HITS] if matrix == str(zoom)}
    assert (row, col) in hits
    assert all(abs(r - row) <= 1 and abs(c - col) <= 1 for r, c in hits)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=12)


async def test_limits_with_prefixed_matrix_names(serve, renderer, ground_truth, upstream_ctx):
    app, url = await start(serve, renderer)
    source = await open_wmts(wmts(url, layer="prefixed"), upstream_ctx)
    assert (source.min_zoom, source.max_zoom) == (LIMITED_ZOOMS[0], LIMITED_ZOOMS[-1])
    assert source.warnings == ()
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14 and result.requests > 0
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    centre = GOOGLE.tile(CENTER_LON, CENTER_LAT, 14)
    assert ("GoogleMapsCompatible", "14", centre.y, centre.x) in app[HITS]
    hits = len(app[HITS])
    assert await source.fetch_tile(TileIndex(0, 0, 14)) is None  # outside the limits
    assert len(app[HITS]) == hits


async def test_limits_naming_no_matrix_warn_and_are_ignored(
    serve, renderer, ground_truth, upstream_ctx
):
    app, url = await start(serve, renderer)
    source = await open_wmts(wmts(url, layer="unmatched"), upstream_ctx)
    assert [w.code for w in source.warnings] == ["limits_match_no_matrix"]
    assert "'unmatched'" in source.warnings[0].message and "L10" in source.warnings[0].message
    assert (source.min_zoom, source.max_zoom) == (0, 16)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.requests == len(app[HITS]) > 0
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    summary = await describe_wmts(wmts(url), upstream_ctx)
    codes = [(w["code"], w["message"]) for w in summary["warnings"]]
    assert any(c == "limits_match_no_matrix" and "'unmatched'" in m for c, m in codes)
    assert not any("'prefixed'" in m for _, m in codes)


async def test_duplicate_matrix_identifiers_warn(serve, renderer, upstream_ctx):
    _, url = await start(serve, renderer)
    source = await open_wmts(wmts(url, layer="dupes"), upstream_ctx)
    assert [w.code for w in source.warnings] == ["duplicate_tile_matrix"]
    assert "'Dupes'" in source.warnings[0].message and "'5'" in source.warnings[0].message
    summary = await describe_wmts(wmts(url), upstream_ctx)
    assert [w["code"] for w in summary["warnings"]].count("duplicate_tile_matrix") == 1
    other = await open_wmts(wmts(url, layer="swiss"), upstream_ctx)
    assert other.warnings == ()


async def test_utf16_capabilities_with_a_bom_are_read(serve, renderer, ground_truth, upstream_ctx):
    _, url = await start(serve, renderer, "/utf16/WMTSCapabilities.xml")
    source = await open_wmts(wmts(url, layer="swiss"), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 8.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=12)


async def test_test_connection_reports_document_warnings_as_findings(serve, renderer, api):
    _, url = await start(serve, renderer)
    server = {"type": "wmts", "name": "w", "url": url, "layer": "unmatched"}
    body = {"server": server, "lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0}
    resp = await api.post("/servers/test", json=body)
    report = await resp.json()
    assert resp.status == 200, report
    codes = {(f["code"], f["severity"]) for f in report["findings"]}
    assert ("limits_match_no_matrix", "warning") in codes
