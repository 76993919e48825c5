"""The resolution guard (SPEC §5): reads finer than detector / max_ratio are refused."""

from __future__ import annotations

import pytest
from rasterio.crs import CRS

from streaming.aoi import parse_aois
from streaming.errors import InvalidRead
from streaming.guard import ResolutionTooHigh, check_resolution
from streaming.image import ReadEstimate, StreamingImage, plan_grid
from streaming.reader import ReadLimits
from tests.streaming.test_image_read import SQUARE, XyzTiles

ESTIMATE = ReadEstimate(zoom=17, requests=81, bytes=81 * 65536, ground_resolution=0.4)


def test_a_read_finer_than_the_ratio_allows_is_refused_with_the_numbers():
    with pytest.raises(ResolutionTooHigh) as info:
        check_resolution(0.4, 2.0, 2.0, ESTIMATE, 0.3, server_id="srv-1")
    e = info.value
    assert e.code == "resolution_too_high"
    assert e.extra == {
        "image_resolution": 0.3,
        "read_resolution": 0.4,
        "detector_resolution": 2.0,
        "max_ratio": 2.0,
        "upstream_requests_avoided": 81,
    }
    assert "0.4 m/px" in e.message and "2 m/px" in e.message and "1 m/px" in e.message
    hint = e.hint or ""
    assert "POST /servers/srv-1/duplicate" in hint and '{"resolution": 2}' in hint
    assert "POST /imports" in hint and "5 times" in hint


@pytest.mark.parametrize(
    ("read", "detector", "ratio"),
    [
        (1.0, 2.0, 2.0),  # exactly at the limit
        (1.0 * (1 - 1e-9), 2.0, 2.0),  # float noise at the limit
        (2.0, 2.0, 2.0),
        (16.0, 0.5, 2.0),  # coarser than the detector: its business
        (0.1, None, 2.0),  # no detector resolution given: no guard
        (0.5, 2.0, 4.0),
    ],
)
def test_reads_within_the_ratio_pass(read, detector, ratio):
    check_resolution(read, detector, ratio, ESTIMATE, 0.3)


def test_just_past_the_limit_is_refused():
    with pytest.raises(ResolutionTooHigh):
        check_resolution(0.999, 2.0, 2.0, ESTIMATE, 0.3)
    with pytest.raises(ResolutionTooHigh) as info:
        check_resolution(0.999, 2.0, 2.0, ESTIMATE, 0.3)
    assert "{server_id}" in (info.value.hint or "")  # no server named: a placeholder


@pytest.mark.parametrize(("detector", "ratio"), [(0.0, 2.0), (-1.0, 2.0), (2.0, 0.0)])
def test_nonsense_parameters_are_invalid(detector, ratio):
    with pytest.raises(InvalidRead):
        check_resolution(1.0, detector, ratio, ESTIMATE, 0.3)


def test_the_guard_prices_a_read_with_the_estimate_without_fetching():
    aois = parse_aois({"type": "Polygon", "coordinates": [SQUARE]})
    source = XyzTiles(None, "http://127.0.0.1:9")  # type: ignore[arg-type]
    img = StreamingImage(
        source, plan_grid(aois, 4.0, CRS.from_epsg(3857)), aois, None, ReadLimits()
    )
    output = img.window(0, 0, 512, 512)
    estimate = img.estimate(output)
    with pytest.raises(ResolutionTooHigh) as info:
        check_resolution(estimate.ground_resolution, 10.0, 2.0, estimate, 4.0)
    assert info.value.extra["upstream_requests_avoided"] == estimate.requests > 0
    assert info.value.extra["read_resolution"] == pytest.approx(4.0, rel=1e-3)
    assert source.fetched == []
    decimated = img.window(0, 0, 512, 512, 256, 256)  # 8 m, coarser than 10 / 2: passes
    check_resolution(img.estimate(decimated).ground_resolution, 10.0, 2.0, estimate, 4.0)
