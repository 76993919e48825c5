"""Web Mercator grid maths: ground resolution of a zoom, and every name of Web Mercator."""

from __future__ import annotations

import math

import pyproj
import pytest
from rasterio.crs import CRS

from streaming.grid import ground_resolution, is_web_mercator, mercator_resolution

# 2 * pi * 6378137 / 256: one pixel of zoom 0 at the equator, in metres.
EQUATOR_Z0 = 156543.03392804097


def test_zoom_0_at_the_equator_is_one_256th_of_the_circumference():
    assert ground_resolution(0, 0.0) == pytest.approx(EQUATOR_Z0, rel=1e-12)
    assert mercator_resolution(0) == pytest.approx(EQUATOR_Z0, rel=1e-12)


@pytest.mark.parametrize(
    ("zoom", "lat", "expected"),
    [
        (1, 0.0, 78271.51696402048),  # EQUATOR_Z0 / 2
        (10, 0.0, 152.8740565703525),  # EQUATOR_Z0 / 1024
        (3, 60.0, 9783.93962050256),  # EQUATOR_Z0 / 8 * 0.5: cos(60 deg) is one half
        (18, 45.0, 0.42225891432965684),  # EQUATOR_Z0 / 262144 * sqrt(2) / 2
        (12, -45.0, 27.024570517098038),  # the scale is symmetric about the equator
        (5, 90.0, 0.0),  # the pole is a line in Mercator
    ],
)
def test_ground_resolution_by_hand(zoom, lat, expected):
    assert ground_resolution(zoom, lat) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert expected == pytest.approx(EQUATOR_Z0 / 2**zoom * math.cos(math.radians(lat)), abs=1e-9)


def test_512_px_tiles_halve_the_pixel_size():
    assert ground_resolution(7, 46.5, 512) == pytest.approx(ground_resolution(7, 46.5) / 2)
    assert ground_resolution(7, 46.5, 512) == pytest.approx(ground_resolution(8, 46.5))


@pytest.mark.parametrize(
    "crs",
    [
        3857,
        3785,
        900913,
        102100,
        102113,
        "3857",
        "EPSG:3857",
        "epsg:3785",
        " EPSG:900913 ",
        "EPSG:102100",  # what some servers write for Esri's code
        "ESRI:102100",
        "ESRI:102113",
        "OSGEO:41001",
        "urn:ogc:def:crs:EPSG::3857",
        "urn:ogc:def:crs:EPSG:6.18:3:3857",
        "urn:ogc:def:crs:EPSG::900913",
        "http://www.opengis.net/def/crs/EPSG/0/3857",
        # the PROJ string GDAL writes for Google's tiles
        "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m"
        " +nadgrids=@null +wktext +no_defs",
        CRS.from_epsg(3857),
        CRS.from_user_input("ESRI:102100"),
        pyproj.CRS.from_epsg(3857),
        pyproj.CRS.from_epsg(3785),
        pyproj.CRS.from_user_input("ESRI:102113"),
    ],
    ids=repr,
)
def test_web_mercator_names(crs):
    assert is_web_mercator(crs)


@pytest.mark.parametrize(
    "crs",
    [
        4326,
        38570,
        "EPSG:4326",
        "EPSG:3395",  # World Mercator: the ellipsoidal one, other metres
        "EPSG:38570",
        "EPSG:13857",
        "EPSG:2056",
        "CRS:84",
        "AUTO:42001",
        "urn:ogc:def:crs:EPSG::4326",
        "not a crs",
        "",
        CRS.from_epsg(3395),
        CRS.from_epsg(4326),
        pyproj.CRS.from_epsg(2056),
    ],
    ids=repr,
)
def test_not_web_mercator(crs):
    assert not is_web_mercator(crs)
