"""Adapters' tile and zoom arithmetic at its edges: the cases mutation testing found unguarded.

Real loopback fakes (tests/upstreams/), expected pixels from the ground truth and
expected indices by hand; see docs/testing.md for the mutants these kill.
"""

from __future__ import annotations

import math

import pyproj
import pytest

from proxy.upstream.crs import corner_in_axis_order, meters_per_unit
from proxy.upstream.registry import parse_config
from proxy.upstream.xyz import XYZSource
from streaming.reader import SourceReader
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    expected,
    preview_grid,
)
from tests.upstreams.xyz import xyz_app


def xyz(url: str, **extra):
    return parse_config({"type": "xyz", "name": "t", "url": url, **extra})


async def test_xyz_serves_its_min_zoom(serve, renderer, ground_truth, upstream_ctx):
    # 10 m/px at 46.5 deg N is zoom 14 (cell 9.55 m in Mercator = 6.6 m on the ground is
    # finer than 10 / cos(46.52) = 14.5 m; zoom 13's 19.1 m is not): the range's only zoom.
    base = await serve(xyz_app(renderer))
    source = XYZSource(xyz(base + "/a/tiles/{z}/{x}/{y}.png", min_zoom=14), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 128)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert_pixels_match(result.rgba, expected(ground_truth, output))


def test_a_degree_is_measured_on_the_crs_own_ellipsoid():
    # WMTS: cell size = scale denominator x 0.28 mm / metres per unit; a degree of NAD27
    # (Clarke 1866, a = 6378206.4 m) is longer than a degree of WGS84 (a = 6378137 m).
    nad27 = pyproj.CRS.from_epsg(4267)
    assert meters_per_unit(nad27) == pytest.approx(2 * math.pi * 6378206.4 / 360, rel=1e-12)
    wgs84 = pyproj.CRS.from_epsg(4326)
    assert meters_per_unit(wgs84) == pytest.approx(2 * math.pi * 6378137.0 / 360, rel=1e-12)
    assert meters_per_unit(pyproj.CRS.from_epsg(2056)) == 1.0


@pytest.mark.parametrize(
    ("corner", "code", "inverted", "expected"),
    [
        # EPSG:4326 is lat,lon: a corner at the pole is valid as written, whatever its lon.
        ((90.0, -10.0), 4326, True, (90.0, -10.0)),
        # A lon just past 90 written first is still a lon: swap it back.
        ((-90.5, 30.0), 4326, True, (30.0, -90.5)),
        # CRS:84 is lon,lat: a corner written lat,lon (|lon| > 90 second) is swapped back.
        ((90.0, -180.0), "OGC:CRS84", False, (-180.0, 90.0)),
        ((-180.0, 90.0), "OGC:CRS84", False, (-180.0, 90.0)),
    ],
)
def test_wmts_corner_axis_order_by_hand(corner, code, inverted, expected):
    crs = pyproj.CRS.from_user_input(code)
    assert corner_in_axis_order(corner, crs, inverted) == expected
