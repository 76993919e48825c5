"""CRS identifiers and axis order as services write them."""

from __future__ import annotations

import pytest
from rasterio.crs import CRS

from proxy.upstream.crs import (
    axis_inverted,
    corner_in_axis_order,
    crs_from_identifier,
    crs_from_wkid,
    northing_first,
    rasterio_crs,
)
from proxy.upstream.wms import bbox_param
from streaming.errors import SourceUnsupported
from streaming.types import BBox

MERCATOR = CRS.from_epsg(3857)


@pytest.mark.parametrize(
    ("wkid", "expected"),
    [
        (102100, MERCATOR),
        (102113, MERCATOR),
        (3785, MERCATOR),
        (4326, CRS.from_epsg(4326)),
        (2056, CRS.from_epsg(2056)),
        (True, None),  # JSON true is not a wkid
        ("3857", None),
        (None, None),
    ],
)
def test_arcgis_wkids(wkid, expected):
    assert crs_from_wkid(wkid) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("EPSG:900913", MERCATOR),
        ("urn:ogc:def:crs:EPSG::3785", MERCATOR),
        ("OSGEO:41001", MERCATOR),
        ("CRS:84", CRS.from_user_input("OGC:CRS84")),
        ("EPSG:2056", CRS.from_epsg(2056)),
        ("AUTO:42001", None),
        ("EPSG:99999999", None),
    ],
)
def test_wms_codes(code, expected):
    assert rasterio_crs(code) == expected


def test_northing_first():
    assert northing_first("EPSG:4326") and northing_first("EPSG:31467")
    assert not any(map(northing_first, ["EPSG:3857", "EPSG:2056", "CRS:84", "EPSG:900913"]))
    assert not northing_first("EPSG:3413")  # polar: both axes "south"
    assert not northing_first("ESRI:102100")


@pytest.mark.parametrize(
    ("code", "first"),
    [
        ("EPSG:21781", False),  # Swiss LV03: easting abbreviated "Y", first
        ("EPSG:28992", False),  # RD New: easting abbreviated "X"
        ("EPSG:2180", True),  # Poland CS92: northing abbreviated "x", first
        ("EPSG:31466", True),  # Gauss-Krueger: northing abbreviated "X"
        ("EPSG:31468", True),
        ("EPSG:3844", True),  # Stereo 70
        ("EPSG:3035", True),  # LAEA Europe: "Y" northing first, as abbreviated
        ("EPSG:32661", True),  # UPS North: polar, "N" first
        ("EPSG:3031", False),  # Antarctic polar stereographic: "E" first
    ],
)
def test_axis_order_follows_axis_directions(code, first):
    assert northing_first(code) is first
    assert axis_inverted(crs_from_identifier(code)) is first


@pytest.mark.parametrize(
    ("code", "version", "sent"),
    [
        ("EPSG:21781", "1.3.0", "537000.0,152000.0,538000.0,153000.0"),
        ("EPSG:2180", "1.3.0", "152000.0,537000.0,153000.0,538000.0"),
        ("EPSG:2180", "1.1.1", "537000.0,152000.0,538000.0,153000.0"),
        ("EPSG:2180", "1.1.0", "537000.0,152000.0,538000.0,153000.0"),
    ],
)
def test_wms_bbox_in_the_crs_axis_order(code, version, sent):
    assert bbox_param(BBox(537000, 152000, 538000, 153000), code, version) == sent


def test_wmts_identifiers():
    assert crs_from_identifier("urn:ogc:def:crs:EPSG::102100").to_epsg() == 3857
    # PROJ cannot read a versioned URN: the EPSG code at its end is taken.
    assert crs_from_identifier("urn:ogc:def:crs:EPSG:6.18:3:2056").to_epsg() == 2056
    with pytest.raises(SourceUnsupported, match="unknown CRS 'urn:x:nothing'"):
        crs_from_identifier("urn:x:nothing")
    with pytest.raises(SourceUnsupported, match="unknown CRS"):
        crs_from_identifier("urn:ogc:def:crs:EPSG:6.18:3:99999999")


def test_corners_written_lon_lat_are_swapped_back():
    wgs84 = crs_from_identifier("EPSG:4326")
    assert corner_in_axis_order((90.0, -180.0), wgs84, True) == (90.0, -180.0)
    assert corner_in_axis_order((-180.0, 90.0), wgs84, True) == (90.0, -180.0)
    mercator = crs_from_identifier("EPSG:3857")
    assert corner_in_axis_order((-2.0e7, 2.0e7), mercator, False) == (-2.0e7, 2.0e7)
