"""Decode upstream image bytes into RGBA arrays, after checking their size (image bombs)."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile

from streaming.errors import SourceBadResponse, SourceImageTooLarge, SourceTruncatedImage

RGBA = npt.NDArray[np.uint8]
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# An image may exceed the size asked by this much (servers round bbox sizes) and no more.
SIZE_MARGIN = 1.05

# Tiles carry no georeference and rasterio warns about each one. A process-wide filter,
# because warnings.catch_warnings() is not thread-safe and decoding runs in workers.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def decode_rgba(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    expect: tuple[int, int] | None = None,
) -> RGBA:
    """Decode a PNG/JPEG/GeoTIFF/WebP image into a (4, height, width) uint8 RGBA array.

    Opening reads the header only (GDAL decodes on read), so the size is checked before
    any pixel is decoded: past ``max_pixels``, or past the ``expect``-ed (width, height)
    the request asked for (with :data:`SIZE_MARGIN`), the image is refused. Memory of a
    decode is then bounded by what the request needs, not by what the upstream sends.
    Grey, grey+alpha, paletted, RGB and RGBA inputs all come out as RGBA; the alpha is
    the image's own alpha or nodata mask.
    """
    if not data:
        raise SourceBadResponse("the upstream sent an empty image")
    check_complete(data)
    try:
        with MemoryFile(data) as memfile, memfile.open() as src:
            check_size(src.width, src.height, max_pixels, expect)
            return _to_rgba(src)
    except RasterioError as exc:
        raise SourceBadResponse(
            f"the upstream image could not be decoded: {exc}",
            hint="the server sent a truncated or damaged image; try again, or check its format",
        ) from exc


def check_complete(data: bytes) -> None:
    """Raise :class:`SourceTruncatedImage` when a PNG, JPEG, GIF or WebP lacks its end.

    GDAL decodes a truncated PNG without an error (the missing rows come out transparent),
    which would pass for "no data here"; the end marker tells a cut image apart.
    """
    tail = data[-64:]
    kind = None
    if data.startswith(b"\x89PNG") and b"IEND" not in tail:
        kind = "PNG"
    elif data.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        kind = "JPEG"
    elif data.startswith(b"GIF8") and not tail.rstrip(b"\x00").endswith(b";"):
        kind = "GIF"
    elif data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        kind = "WebP"
    if kind is not None:
        raise SourceTruncatedImage(
            f"the upstream {kind} image is truncated ({len(data)} bytes, no end marker)",
            hint="the server or a proxy on the way cut the image short; try again",
        )


def check_size(
    width: int, height: int, max_pixels: int, expect: tuple[int, int] | None = None
) -> None:
    """Raise :class:`SourceImageTooLarge` for an image past the budget or the asked size."""
    if width * height > max_pixels:
        raise SourceImageTooLarge(
            f"upstream image is {width}x{height} px, past the limit of {max_pixels} px",
            hint="the server sends images larger than this service accepts",
        )
    if expect is not None:
        ew, eh = expect
        if width > ew * SIZE_MARGIN + 2 or height > eh * SIZE_MARGIN + 2:
            raise SourceImageTooLarge(
                f"upstream image is {width}x{height} px, larger than the {ew}x{eh} px asked",
                hint="check the configured tile size; the server sends larger images",
            )


def _to_rgba(src: object) -> RGBA:
    """Expand whatever band layout ``src`` has into RGBA."""
    count: int = src.count  # type: ignore[attr-defined]
    bands = src.read(out_dtype="uint8")  # type: ignore[attr-defined]
    height, width = bands.shape[1:]
    out = np.empty((4, height, width), dtype=np.uint8)
    if count == 1 and _has_colormap(src):
        cmap = src.colormap(1)  # type: ignore[attr-defined]
        lut = np.zeros((256, 4), dtype=np.uint8)
        for index, rgba in cmap.items():
            lut[index] = rgba
        out[:] = np.moveaxis(lut[bands[0]], -1, 0)
        if src.nodata is not None:  # type: ignore[attr-defined]
            out[3][bands[0] == int(src.nodata)] = 0  # type: ignore[attr-defined]
        return out
    if count in (1, 2):
        out[:3] = bands[0]
    else:
        out[:3] = bands[:3]
    out[3] = src.dataset_mask()  # type: ignore[attr-defined]
    return out


def _has_colormap(src: object) -> bool:
    try:
        src.colormap(1)  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True


def is_blank(rgba: RGBA) -> bool:
    """True when an image is fully transparent or one uniform colour (a no-data tile)."""
    alpha = rgba[3]
    if not alpha.any():
        return True
    first = rgba[:, 0, 0]
    return bool((rgba == first[:, None, None]).all())
