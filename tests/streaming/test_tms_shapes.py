"""Reads of tile matrix sets shaped like real servers', over the fake WMTS on loopback.

Bottom-left corners of origin cannot be written in WMTS 1.0.0 capabilities, so these tests
hand the reader a :class:`streaming.sources.TileSource` of the tests' own over the fake
server's tile path. The expected zoom and tiles come from the set definitions by hand
(``tests/upstreams/tms_shapes.py``), the expected pixels from rasterio and the ground truth.
"""

from __future__ import annotations

import aiohttp
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine

from streaming.mosaic import Grid
from streaming.reader import SourceReader
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    envelope,
    expected,
    preview_grid,
    tiles_by_hand,
)
from tests.upstreams.tms_shapes import MERCATOR_BL, MERCATOR_INSET, SWISS, SWISS_BL, SetDef
from tests.upstreams.wmts import TILES, TIME, wmts_app


class RestTiles:
    """A tile source over the fake WMTS REST tile path of ``lausanne_shapes``."""

    def __init__(self, session: aiohttp.ClientSession, base: str, shape: SetDef) -> None:
        self.session, self.base, self.shape = session, base, shape
        self.tms = shape.tms()
        self.min_zoom, self.max_zoom = 0, len(shape.matrices) - 1

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        url = (
            f"{self.base}/rest/lausanne_shapes/default/{TIME}/{self.shape.ident}/"
            f"{tile.z}/{tile.y}/{tile.x}.png"
        )
        async with self.session.get(url) as resp:
            if resp.status == 404:
                return None
            assert resp.status == 200, await resp.text()
            return FetchedImage(await resp.read(), resp.content_type)


@pytest.fixture
async def shapes_server(serve, renderer):
    app = wmts_app(renderer, shapes=True)
    base = await serve(app)
    async with aiohttp.ClientSession() as session:
        yield app, lambda shape: RestTiles(session, base, shape)


def zoom_by_hand(shape: SetDef, output: Grid) -> int:
    """The coarsest matrix whose cell is at least as fine as the read (SPEC §4)."""
    left, bottom, right, top = envelope(output, CRS.from_epsg(shape.epsg))
    res = min((right - left) / output.width, (top - bottom) / output.height)
    return next(i for i, (cell, _, _) in enumerate(shape.matrices) if cell <= res)


def requested(app, shape: SetDef) -> list[tuple[int, int, int]]:
    return sorted((int(m), c, r) for ident, m, c, r in app[TILES] if ident == shape.ident)


# Preview tiles worked out on paper from each definition (see tests/upstreams/tms_shapes.py):
# e.g. SwissLV95, 8 m cells, 2048 m tiles from (2420000, 1350000): the preview spans
# x 2536655..2539241, y 1151105..1153691, so cols 56..58 and rows 95..97.
PREVIEW_TILES = {
    "SwissLV95": (4, range(56, 59), range(95, 98)),
    "SwissBL": (4, range(56, 59), range(59, 61)),  # rows up from y 1030000
    "MercatorInset": (2, range(2, 5), range(2, 4)),  # origin (730000, 5871000)
    "MercatorBL": (14, range(8492, 8495), range(10588, 10591)),  # 2**14 - 1 - (5793..5795)
}


@pytest.mark.parametrize(
    "shape", [SWISS, SWISS_BL, MERCATOR_INSET, MERCATOR_BL], ids=lambda s: s.ident
)
async def test_preview_pixels_and_tiles(shapes_server, ground_truth, shape):
    app, source_of = shapes_server
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source_of(shape)).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=12)
    zoom, cols, rows = PREVIEW_TILES[shape.ident]
    assert result.zoom == zoom == zoom_by_hand(shape, output)
    cell, width, height = shape.matrices[zoom]
    bbox = envelope(output, CRS.from_epsg(shape.epsg))
    by_hand = tiles_by_hand(
        bbox, shape.origin, cell, (width, height), bottom_left=shape.bottom_left
    )
    assert by_hand == {(c, r) for c in cols for r in rows}
    assert requested(app, shape) == sorted((zoom, c, r) for c, r in by_hand)
    assert result.missing == 0


def test_bottom_left_rows_mirror_top_left_rows():
    # The same Web Mercator tiles counted from the south: row_bl = 2**z - 1 - row_tl.
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    cell, width, height = MERCATOR_BL.matrices[14]
    bbox = envelope(output, CRS.from_epsg(3857))
    half = -MERCATOR_BL.origin[0]
    top_left = tiles_by_hand(bbox, (-half, half), cell, (width, height))
    bottom_left = tiles_by_hand(bbox, (-half, -half), cell, (width, height), bottom_left=True)
    assert bottom_left == {(c, 2**14 - 1 - r) for c, r in top_left}


# Reads in the set's own CRS at a matrix's cell size, placed off the tile boundaries.
BBOX_READS = [
    (SWISS, 5, 2536100.0, 1153900.0, 300, 200),
    (SWISS_BL, 5, 2536100.0, 1153900.0, 300, 200),
    (MERCATOR_INSET, 3, 737000.0, 5865500.0, 320, 280),
    (MERCATOR_BL, 15, 737000.0, 5865500.0, 320, 280),
]


@pytest.mark.parametrize(
    ("shape", "zoom", "left", "top", "width", "height"),
    BBOX_READS,
    ids=[r[0].ident for r in BBOX_READS],
)
async def test_bbox_read_in_the_set_crs(
    shapes_server, ground_truth, shape, zoom, left, top, width, height
):
    app, source_of = shapes_server
    cell, mw, mh = shape.matrices[zoom]
    output = Grid(CRS.from_epsg(shape.epsg), Affine(cell, 0, left, 0, -cell, top), width, height)
    result = await SourceReader(source_of(shape)).read(output)
    assert result.zoom == zoom
    # A read on the matrix's own cells moves no pixel: nearly exact against rasterio.
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=6)
    bbox = (left, top - cell * height, left + cell * width, top)
    by_hand = tiles_by_hand(bbox, shape.origin, cell, (mw, mh), bottom_left=shape.bottom_left)
    assert requested(app, shape) == sorted((zoom, c, r) for c, r in by_hand)
