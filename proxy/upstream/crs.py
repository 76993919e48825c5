"""CRS identifiers and axis order, as WMS, WMTS and ArcGIS services write them.

Servers name a CRS in many ways (``EPSG:3857``, ``urn:ogc:def:crs:EPSG:6.18:3:3857``,
an ArcGIS wkid) and PROJ does not know them all; Web Mercator aliases always become
EPSG:3857 (:func:`streaming.grid.is_web_mercator` decides). Axis order follows the
CRS definition: EPSG:4326 is lat,lon where a standard says "the CRS's own order"
(WMS 1.3.0 BBOX, WMTS TopLeftCorner); CRS:84 and Web Mercator are always x,y. The order
is judged by axis direction (:func:`streaming.grid.northing_first`), never by the
abbreviations (EPSG:21781 calls its easting "Y").
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import pyproj
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.errors import CRSError as RasterioCRSError

from streaming.errors import SourceUnsupported
from streaming.grid import WEB_MERCATOR_CRS, is_web_mercator
from streaming.grid import northing_first as crs_northing_first

CRS84_CODES = ("CRS:84", "OGC:CRS84")
# The EPSG code at the end of an identifier PROJ cannot read (a versioned URN).
EPSG_TAIL = re.compile(r"EPSG\W.*?(\d+)$", re.I)


@lru_cache(maxsize=1024)
def rasterio_crs(code: str) -> CRS | None:
    """The rasterio CRS a WMS CRS code names; ``None`` for AUTO codes and unknown ones.

    Parsing costs about a millisecond: call it in the executor for long lists.
    """
    upper = code.strip().upper()
    if is_web_mercator(upper):
        return WEB_MERCATOR_CRS
    if upper in CRS84_CODES:
        return CRS.from_user_input("OGC:CRS84")
    if upper.startswith("AUTO"):
        return None
    try:
        return CRS.from_user_input(code.strip())
    except RasterioCRSError:
        return None


@lru_cache(maxsize=1024)
def northing_first(code: str) -> bool:
    """True when the CRS's first axis is northing or latitude (EPSG:4326, EPSG:31467...)."""
    upper = code.strip().upper()
    if upper in CRS84_CODES or is_web_mercator(upper):
        return False
    try:
        return crs_northing_first(pyproj.CRS.from_user_input(code.strip()))
    except CRSError:
        return False


@lru_cache(maxsize=64)
def crs_from_identifier(identifier: str) -> pyproj.CRS:
    """The CRS of a WMTS SupportedCRS value; Web Mercator aliases become EPSG:3857."""
    if is_web_mercator(identifier):
        return pyproj.CRS.from_epsg(3857)
    try:
        return pyproj.CRS.from_user_input(identifier)
    except CRSError:
        match = EPSG_TAIL.search(identifier)  # e.g. urn:ogc:def:crs:EPSG:6.18:3:2056
        try:
            if match:
                return pyproj.CRS.from_epsg(int(match.group(1)))
        except CRSError:
            pass
    raise SourceUnsupported(f"unknown CRS {identifier!r} in the capabilities")


def crs_from_wkid(wkid: object) -> CRS | None:
    """The CRS of an ArcGIS wkid (Web Mercator aliases as EPSG:3857); ``None`` if GDAL has none."""
    if not isinstance(wkid, int) or isinstance(wkid, bool):
        return None
    if is_web_mercator(wkid):
        return WEB_MERCATOR_CRS
    try:
        return CRS.from_epsg(wkid)
    except RasterioCRSError:
        return None


def meters_per_unit(crs: pyproj.CRS) -> float:
    """Metres per CRS unit; a degree is 2*pi*a/360 as the WMTS standard says."""
    if crs.is_geographic:
        radius = crs.ellipsoid.semi_major_metre if crs.ellipsoid else 6378137.0
        return 2 * math.pi * radius / 360.0
    return float(crs.axis_info[0].unit_conversion_factor)


def axis_inverted(crs: pyproj.CRS) -> bool:
    """True when the CRS's first axis is northing/latitude, by axis direction."""
    return crs_northing_first(crs)


def corner_in_axis_order(
    corner: tuple[float, float], crs: pyproj.CRS, inverted: bool
) -> tuple[float, float]:
    """A WMTS TopLeftCorner in CRS axis order; some servers write lon,lat anyway (|lat| > 90)."""
    a, b = corner
    if crs.is_geographic and abs(a if inverted else b) > 90 >= abs(b if inverted else a):
        return b, a
    return a, b


def crs_uri(crs: pyproj.CRS) -> str:
    """The OGC URI of an EPSG or OGC CRS (what morecantile prints), else its WKT."""
    authority, code = crs.to_authority() or ("", "")
    if authority == "EPSG":
        return f"http://www.opengis.net/def/crs/EPSG/0/{code}"
    if authority == "OGC":
        return f"http://www.opengis.net/def/crs/OGC/1.3/{code}"
    return str(crs.to_wkt())
