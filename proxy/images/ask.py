"""Parse the reads of a streaming image: what area, at what size, in what format.

Pure functions of the path and query strings, checked against the image's size before
anything else happens (no library call, no upstream request): every bad input gets its
own 400 code (:mod:`proxy.images.errors`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
from rasterio.crs import CRS
from rasterio.errors import CRSError

from proxy.catalog.base import ImageRecord
from proxy.errors import BadRequest, InvalidTile, UnknownFormat
from proxy.images.errors import InvalidBBox, InvalidSize, UnknownCRS, WindowOutside

FORMATS = ("tif", "npy", "png", "jpg")
MAX_SIDE = 32_768  # px per side of any read; total pixels are bounded by max_read_pixels
MAX_ZOOM = 24
DETECTOR_HEADER = "X-Detector-Resolution"


@attrs.frozen
class WindowAsk:
    """A pixel window of the image, optionally decimated to ``out_width`` x ``out_height``."""

    col_off: int
    row_off: int
    width: int
    height: int
    out_width: int | None = None
    out_height: int | None = None


@attrs.frozen
class BBoxAsk:
    """A bbox in ``crs``, at a size or a resolution (CRS units per pixel)."""

    bbox: tuple[float, float, float, float]
    crs: CRS
    width: int | None = None
    height: int | None = None
    resolution: float | None = None


@attrs.frozen
class TileAsk:
    """A WebMercatorQuad tile."""

    z: int
    x: int
    y: int


@attrs.frozen
class PreviewAsk:
    """The whole image, at most ``max_size`` px on its longer side."""

    max_size: int


ReadAsk = WindowAsk | BBoxAsk | TileAsk | PreviewAsk


def parse_format(fmt: str) -> str:
    """The output format (``jpeg`` and ``tiff`` are accepted as their short names)."""
    fmt = {"jpeg": "jpg", "tiff": "tif"}.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise UnknownFormat(
            f"unknown format {fmt[:20]!r}", hint=f"use one of: {', '.join(FORMATS)}"
        )
    return fmt


def whole(value: str, name: str, lo: int, hi: int) -> int:
    """A whole number in ``lo..hi``, else :class:`InvalidSize`."""
    try:
        number = int(value)
    except ValueError:
        raise InvalidSize(f"{name} must be a whole number, not {value[:20]!r}") from None
    if not lo <= number <= hi:
        raise InvalidSize(f"{name} must be between {lo} and {hi}, not {number}")
    return number


def positive(value: str, name: str) -> float:
    """A finite number > 0, else :class:`InvalidSize`."""
    try:
        number = float(value)
    except ValueError:
        raise InvalidSize(f"{name} must be a number, not {value[:20]!r}") from None
    if not (math.isfinite(number) and 0 < number < 1e9):
        raise InvalidSize(f"{name} must be a number > 0, not {value[:20]!r}")
    return number


def _optional_side(query: Mapping[str, str], name: str) -> int | None:
    return whole(query[name], name, 1, MAX_SIDE) if name in query else None


def parse_window(
    image: ImageRecord, parts: tuple[str, str, str, str], query: Mapping[str, str]
) -> WindowAsk:
    """``col_off,row_off,width,height`` inside the image, and ``out_width``/``out_height``."""
    col_off = whole(parts[0], "col_off", 0, 10**9)
    row_off = whole(parts[1], "row_off", 0, 10**9)
    width = whole(parts[2], "width", 1, 10**9)
    height = whole(parts[3], "height", 1, 10**9)
    if col_off + width > image.width or row_off + height > image.height:
        raise WindowOutside(
            f"the window {col_off},{row_off},{width},{height} is not inside the image "
            f"({image.width}x{image.height} px)",
            hint="keep col_off + width <= image width and row_off + height <= image height",
        )
    out_width, out_height = _optional_side(query, "out_width"), _optional_side(query, "out_height")
    if out_width is None and out_height is None and max(width, height) > MAX_SIDE:
        raise InvalidSize(
            f"a window of {width}x{height} px is past {MAX_SIDE} px a side",
            hint="ask for a smaller window, or decimate it with out_width/out_height",
        )
    return WindowAsk(col_off, row_off, width, height, out_width, out_height)


def parse_crs(value: str) -> CRS:
    """A CRS PROJ knows (``EPSG:32631``, a URN, WKT), else :class:`UnknownCRS`."""
    try:
        return CRS.from_user_input(value)
    except (CRSError, ValueError, TypeError):
        raise UnknownCRS(
            f"unknown CRS {value[:60]!r}", hint="give an EPSG code such as EPSG:4326 or EPSG:32631"
        ) from None


def parse_bbox(parts: tuple[str, str, str, str], query: Mapping[str, str]) -> BBoxAsk:
    """``minx,miny,maxx,maxy`` in ``crs`` (default EPSG:4326), with a size or a resolution."""
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise InvalidBBox("the bbox must be four numbers: minx,miny,maxx,maxy") from None
    if not all(math.isfinite(v) and abs(v) < 1e12 for v in (minx, miny, maxx, maxy)):
        raise InvalidBBox("the bbox must be finite numbers")
    if not (minx < maxx and miny < maxy):
        raise InvalidBBox(
            "the bbox must have minx < maxx and miny < maxy",
            hint="in EPSG:4326 the order is lon,lat,lon,lat (west,south,east,north)",
        )
    crs = parse_crs(query.get("crs", "EPSG:4326"))
    width, height = _optional_side(query, "width"), _optional_side(query, "height")
    resolution = positive(query["resolution"], "resolution") if "resolution" in query else None
    if resolution is not None and (width is not None or height is not None):
        raise BadRequest("give either width/height or resolution, not both")
    return BBoxAsk((minx, miny, maxx, maxy), crs, width, height, resolution)


def parse_tile(z: str, x: str, y: str) -> TileAsk:
    """``z/x/y`` of WebMercatorQuad, else :class:`InvalidTile`."""
    try:
        zi, xi, yi = int(z), int(x), int(y)
    except ValueError:
        raise InvalidTile("z, x and y must be whole numbers") from None
    if not (0 <= zi <= MAX_ZOOM and 0 <= xi < 2**zi and 0 <= yi < 2**zi):
        raise InvalidTile(f"no tile {zi}/{xi}/{yi} in WebMercatorQuad")
    return TileAsk(zi, xi, yi)


def parse_preview(query: Mapping[str, str]) -> PreviewAsk:
    """``max_size`` (default 1024) of the preview."""
    return PreviewAsk(whole(query.get("max_size", "1024"), "max_size", 1, 4096))


def detector_resolution(query: Mapping[str, str], headers: Mapping[str, str]) -> float | None:
    """The detector's resolution (m/px): ``detector_resolution`` query or header."""
    value = query.get("detector_resolution", headers.get(DETECTOR_HEADER))
    if value is None:
        return None
    try:
        return positive(value, "detector_resolution")
    except InvalidSize as exc:
        raise BadRequest(
            exc.message,
            hint=f"send the detector's m/px as detector_resolution or {DETECTOR_HEADER}",
        ) from None
