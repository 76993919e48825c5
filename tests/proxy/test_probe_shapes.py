"""Test connection of WMTS sets that are not Web Mercator quads: pixels and tiles by hand.

``SwissLV95`` (EPSG:2056 national grid, TileMatrixSetLimits, matrix widths that vary
unevenly) and ``MercatorInset`` (Web Mercator cells, top-left origin inside the CRS) are
defined by hand in ``tests/upstreams/tms_shapes.py``; the service only sees capabilities.
"""

from __future__ import annotations

import base64

import pytest
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    envelope,
    expected,
    preview_grid,
    tiles_by_hand,
)
from tests.upstreams.tms_shapes import MERCATOR_INSET, SWISS
from tests.upstreams.wmts import TILES, wmts_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 256}
CAPS = "/wmts/1.0.0/WMTSCapabilities.xml"


@pytest.mark.parametrize(
    ("shape", "zoom", "cols", "rows"),
    [
        # 10 m preview: about 10.09 m of LV95, so the 8 m matrix; 2048 m tiles from
        # (2420000, 1350000) over x 2536655..2539241, y 1151105..1153691.
        (SWISS, 4, range(56, 59), range(95, 98)),
        # 14.53 m of Mercator, so zoom 14's 9.55 m cells; 2446 m tiles from (730000, 5871000).
        (MERCATOR_INSET, 2, range(2, 5), range(2, 4)),
    ],
    ids=lambda v: getattr(v, "ident", None),
)
async def test_preview_pixels_and_tiles(
    api, serve, renderer, ground_truth, shape, zoom, cols, rows
):
    app = wmts_app(renderer, shapes=True)
    base = await serve(app)
    server = {
        "type": "wmts",
        "name": "t",
        "url": base + CAPS,
        "layer": "lausanne_shapes",
        "tile_matrix_set": shape.ident,
    }
    resp = await api.post("/servers/test", json={"server": server, **PLACE})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["zoom"] == zoom
    with MemoryFile(base64.b64decode(body["preview"]["base64"])) as mem, mem.open() as src:
        rgba = src.read()
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    assert_pixels_match(rgba, expected(ground_truth, output), tolerance=12)
    cell, width, height = shape.matrices[zoom]
    bbox = envelope(output, CRS.from_epsg(shape.epsg))
    by_hand = tiles_by_hand(bbox, shape.origin, cell, (width, height))
    assert by_hand == {(c, r) for c in cols for r in rows}
    hits = sorted((int(m), c, r) for ident, m, c, r in app[TILES] if ident == shape.ident)
    assert hits == sorted((zoom, c, r) for c, r in by_hand)
