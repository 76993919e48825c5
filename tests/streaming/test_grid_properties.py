"""Property tests (hypothesis) of the grid maths and of request splitting.

Each oracle is written here from first principles (the Web Mercator sphere, interval
overlap, pixel counting), never by calling the product's own helpers.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.grid import (
    ground_resolution,
    is_web_mercator,
    tile_range,
    web_mercator_tms,
    zoom_for_resolution,
)
from streaming.plan import split_request
from streaming.types import BBox

EARTH = 2 * math.pi * 6378137.0  # the Web Mercator sphere's circumference, metres
HALF = EARTH / 2
TMS = web_mercator_tms()
PROPS = settings(max_examples=150, deadline=None)


def oracle_resolution(zoom: int, tile_size: int = 256) -> float:
    """Metres per pixel at the equator: the circumference over the pixels around it."""
    return EARTH / (tile_size * 2**zoom)


@PROPS
@given(
    zoom=st.integers(0, 24),
    lat=st.floats(-85.05, 85.05),
    tile_size=st.sampled_from([256, 512]),
)
def test_ground_resolution_is_the_equator_pixel_shrunk_by_cos_lat(zoom, lat, tile_size):
    got = ground_resolution(zoom, lat, tile_size)
    expected = oracle_resolution(zoom, tile_size) * math.cos(math.radians(lat))
    assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(ground_resolution(zoom, -lat, tile_size), got, rel_tol=1e-12)
    if zoom < 24:
        assert math.isclose(ground_resolution(zoom + 1, lat, tile_size), got / 2, rel_tol=1e-12)


@PROPS
@given(
    res=st.floats(1e-3, 1e6),
    zooms=st.tuples(st.integers(0, 24), st.integers(0, 24)).map(sorted),
)
def test_zoom_for_resolution_is_the_coarsest_zoom_at_least_as_fine(res, zooms):
    lo, hi = zooms
    zoom = zoom_for_resolution(TMS, res, lo, hi)
    fine_enough = [z for z in range(lo, hi + 1) if oracle_resolution(z) <= res * (1 + 1e-6)]
    assert zoom == (fine_enough[0] if fine_enough else hi)
    # and so: one zoom coarser would not have been fine enough
    if zoom > lo:
        assert oracle_resolution(zoom - 1) > res


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


@st.composite
def boxes(draw):
    """A bbox inside the Web Mercator square, at least a metre wide and tall."""
    left = draw(st.floats(-HALF, HALF - 1))
    bottom = draw(st.floats(-HALF, HALF - 1))
    right = draw(st.floats(left + 1, HALF))
    top = draw(st.floats(bottom + 1, HALF))
    return BBox(left, bottom, right, top)


@PROPS
@given(bbox=boxes(), zoom=st.integers(0, 7))
def test_tile_range_holds_exactly_the_tiles_that_overlap(bbox, zoom):
    cols, rows = tile_range(TMS, bbox, zoom)
    n = 2**zoom
    span = EARTH / n
    tol = 1e-5 * span  # edges that touch within this are either way
    for col in range(n):
        left = -HALF + col * span
        o = overlap(left, left + span, bbox.left, bbox.right)
        if o > tol:
            assert col in cols
        if col in cols:
            assert o > -tol
    for row in range(n):  # rows count down from the top
        top = HALF - row * span
        o = overlap(top - span, top, bbox.bottom, bbox.top)
        if o > tol:
            assert row in rows
        if row in rows:
            assert o > -tol


MERCATOR_CODES = [3857, 3785, 900913, 102100, 102113]
OTHER_CODES = [4326, 3395, 32631, 2154, 27700, 3035, 4269, 3034]
FORMS = [
    "EPSG:{}",
    "epsg:{}",
    "urn:ogc:def:crs:EPSG::{}",
    "http://www.opengis.net/def/crs/EPSG/0/{}",
]


@PROPS
@given(code=st.sampled_from(MERCATOR_CODES + OTHER_CODES), form=st.sampled_from(FORMS))
def test_is_web_mercator_by_code_in_any_spelling(code, form):
    if code in (900913, 102100, 102113) and form.startswith("http"):
        return  # not EPSG codes: no EPSG URI names them
    prefix = "ESRI" if code in (102100, 102113) else "EPSG"
    name = form.format(code).replace("EPSG", prefix).replace("epsg", prefix.lower())
    assert is_web_mercator(name) == (code in MERCATOR_CODES)


@PROPS
@given(
    width=st.integers(1, 1500),
    height=st.integers(1, 1500),
    max_width=st.integers(1, 1500),
    max_height=st.integers(1, 1500),
)
def test_split_request_parts_tile_the_whole_exactly(width, height, max_width, max_height):
    # keep the part count small: a strip of 1 px parts is valid but slow to count
    if math.ceil(width / max_width) * math.ceil(height / max_height) > 400:
        max_width, max_height = max(max_width, width // 20 + 1), max(max_height, height // 20 + 1)
    parts = split_request(width, height, max_width, max_height)
    covered = np.zeros((height, width), dtype=np.int32)
    for col, row, w, h in parts:
        assert 0 < w <= max_width and 0 < h <= max_height
        assert col >= 0 and row >= 0 and col + w <= width and row + h <= height
        covered[row : row + h, col : col + w] += 1
    assert (covered == 1).all()  # every pixel exactly once: no gap, no overlap
    # as few parts as the max size allows
    assert len(parts) == math.ceil(width / max_width) * math.ceil(height / max_height)
