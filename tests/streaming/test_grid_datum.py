"""A WGS84 point meets a tile matrix set in the set's own CRS and datum."""

from __future__ import annotations

import math

import pytest
from morecantile import TileMatrixSet
from pyproj import Transformer

from streaming.grid import tile_for_lonlat
from streaming.types import TileIndex
from tests.upstreams.wmts_sets import LV03

# The Dutch national tiling (PDOK, EPSG:28992): corner -285401.92, 903401.92; matrix z
# has 2**z x 2**z tiles of 256 px and a cell of 3440.64 / 2**z metres.
RD_CORNER = (-285401.92, 903401.92)
RD_CELL0 = 3440.64
AMSTERDAM = (4.9003, 52.3728)  # lon, lat (WGS84)


def rd_set() -> TileMatrixSet:
    matrices = [
        {
            "id": str(z),
            "scaleDenominator": RD_CELL0 / 2**z / 0.00028,
            "cellSize": RD_CELL0 / 2**z,
            "pointOfOrigin": RD_CORNER,
            "tileWidth": 256,
            "tileHeight": 256,
            "matrixWidth": 2**z,
            "matrixHeight": 2**z,
        }
        for z in range(17)
    ]
    return TileMatrixSet(
        id="RD",
        crs="http://www.opengis.net/def/crs/EPSG/0/28992",
        orderedAxes=["E", "N"],
        tileMatrices=matrices,
    )


@pytest.mark.parametrize("zoom", [3, 9, 14, 16])
def test_rd_new_tile_is_found_in_the_amersfoort_datum(zoom):
    x, y = Transformer.from_crs(4326, 28992, always_xy=True).transform(*AMSTERDAM)
    span = RD_CELL0 / 2**zoom * 256
    by_hand = TileIndex(
        math.floor((x - RD_CORNER[0]) / span), math.floor((RD_CORNER[1] - y) / span), zoom
    )
    tms = rd_set()
    assert tile_for_lonlat(tms, zoom, *AMSTERDAM) == by_hand
    if zoom >= 14:  # morecantile reads lon/lat in Amersfoort: ~100 m off, a neighbour tile
        assert TileIndex(*tms.tile(*AMSTERDAM, zoom)) != by_hand


def test_easting_first_swiss_set_and_clamping():
    lon, lat = 6.63, 46.52
    east, north = Transformer.from_crs(4326, 21781, always_xy=True).transform(lon, lat)
    span = 10 * 256  # matrix 6 of tests.upstreams.wmts_sets.LV03: 10 m cells
    expected = TileIndex(math.floor((east - 420000) / span), math.floor((350000 - north) / span), 6)
    assert tile_for_lonlat(LV03, 6, lon, lat) == expected
    matrix = LV03.matrix(6)
    far = tile_for_lonlat(LV03, 6, 30.0, 20.0)  # south-east of the matrix: its last tile
    assert (far.x, far.y) == (matrix.matrixWidth - 1, matrix.matrixHeight - 1)
