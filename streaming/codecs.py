"""Decode upstream images and encode answers: the one place that touches image formats.

Each format goes through the library that was fastest here, measured by
``benchmarks/bench_codecs.py`` (figures in ``benchmarks/RESULTS.md``):

- JPEG decode and encode: simplejpeg (libjpeg-turbo). It decodes straight into RGBA,
  can decode at 1/2, 1/4 or 1/8 scale, and encodes from RGBA without dropping alpha first.
- PNG and any other decode (GIF, TIFF, WebP...): GDAL, the fastest PNG decoder measured,
  which also expands palettes and nodata into alpha.
- PNG encode: our few lines over the standard library's zlib (:func:`encode_png`), twice
  as fast as Pillow, libpng (imagecodecs) or GDAL, which tie with each other.
- WebP encode: Pillow (libwebp). GDAL's MemoryFile costs ~10x more for JPEG.

Pixels travel as one interleaved (height, width, 4) RGBA buffer, which is what the
decoders write, the resampler reads and the encoders take; the band-first (4, h, w)
arrays callers see are views of it, so no layout conversion copies anything. Every
decode checks the image's size from its header first (image bombs, wrong tile size).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Literal

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile

from streaming.errors import SourceBadResponse, SourceImageTooLarge, SourceTruncatedImage
from streaming.gdal_env import thread_env

Pixels = npt.NDArray[np.uint8]  # (height, width, 4) interleaved RGBA
Bands = npt.NDArray[np.uint8]  # (count, height, width) band-first, often a view of Pixels
Mask = npt.NDArray[np.uint8]  # (height, width): 0 no data, 255 data
Format = Literal["png", "jpeg", "webp"]
FORMATS: tuple[Format, ...] = ("png", "jpeg", "webp")
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# An image may exceed the size asked by this much (servers round bbox sizes) and no more.
SIZE_MARGIN = 1.05
JPEG_QUALITY = 90
PNG_COMPRESSION = 1  # zlib level: 1 is ~5x faster than 6 for ~15 % more bytes on imagery
WEBP_QUALITY = 85
WEBP_METHOD = 0  # libwebp effort: 0 is ~4x faster than the default 4, ~20 % more bytes
REDUCE_FACTORS = (1, 2, 4, 8)  # the scales libjpeg can decode at
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA

# We check sizes ourselves, before decoding; Pillow's own bomb check would only warn.
Image.MAX_IMAGE_PIXELS = None
# Tiles carry no georeference and rasterio warns about each one. A process-wide filter,
# because warnings.catch_warnings() is not thread-safe and decoding runs in workers.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    expect: tuple[int, int] | None = None,
    reduce: int = 1,
) -> tuple[Bands, Mask]:
    """Decode an image into RGB bands (3, h, w) and its mask (h, w), both views of RGBA.

    See :func:`decode_pixels` for the checks and ``reduce``.
    """
    pixels = decode_pixels(data, max_pixels=max_pixels, expect=expect, reduce=reduce)
    return pixels[..., :3].transpose(2, 0, 1), pixels[..., 3]


def decode_pixels(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    expect: tuple[int, int] | None = None,
    reduce: int = 1,
) -> Pixels:
    """Decode a PNG/JPEG/GeoTIFF/WebP/GIF image into (h, w, 4) RGBA.

    Only the header is read before the size is checked: past ``max_pixels``, or past
    the ``expect``-ed (width, height) the request asked for (with :data:`SIZE_MARGIN`),
    the image is refused, so a decode's memory is bounded by what the request needs.
    A truncated PNG/JPEG/GIF/WebP is refused too. Grey, paletted, RGB and RGBA inputs
    all come out as RGBA; alpha is the image's own alpha or nodata mask.

    ``reduce`` (1, 2, 4 or 8) asks for the image at that fraction of its size, each side
    rounded up: a JPEG is decoded at that scale (cheaper), others are decoded whole and
    then averaged down.
    """
    if reduce not in REDUCE_FACTORS:
        raise ValueError(f"reduce must be one of {REDUCE_FACTORS}")
    if not data:
        raise SourceBadResponse("the upstream sent an empty image")
    check_complete(data)
    if data.startswith(b"\xff\xd8"):
        pixels = _decode_jpeg(data, max_pixels, expect, reduce)
        if pixels is not None:
            return pixels
    pixels = _decode_gdal(data, max_pixels, expect)
    return pixels if reduce == 1 else _average_down(pixels, reduce)


def _decode_jpeg(
    data: bytes, max_pixels: int, expect: tuple[int, int] | None, reduce: int
) -> Pixels | None:
    """simplejpeg's decode, or None for what libjpeg-turbo cannot turn into RGBA (CMYK)."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None  # GDAL names the damage
    check_size(width, height, max_pixels, expect)
    if colorspace not in ("Gray", "YCbCr", "RGB"):
        return None
    try:
        # The largest libjpeg scale keeping at least this size is exactly 1/reduce. Not
        # strict: libjpeg's warnings (extraneous bytes, a corrupt segment) leave an image,
        # as GDAL did; a cut image was refused above, a broken one raises here.
        pixels: Pixels = simplejpeg.decode_jpeg(
            data,
            "RGBA",
            min_height=-(-height // reduce),
            min_width=-(-width // reduce),
            strict=False,
        )
    except ValueError as exc:
        raise _undecodable(exc) from exc
    return pixels


def _decode_gdal(data: bytes, max_pixels: int, expect: tuple[int, int] | None) -> Pixels:
    thread_env()
    try:
        with MemoryFile(data) as memfile, memfile.open() as src:
            check_size(src.width, src.height, max_pixels, expect)  # opening read the header
            return _gdal_pixels(src)
    except RasterioError as exc:
        raise _undecodable(exc) from exc


def _gdal_pixels(src: object) -> Pixels:
    """Expand whatever band layout ``src`` has into interleaved RGBA."""
    count: int = src.count  # type: ignore[attr-defined]
    bands = src.read(out_dtype="uint8")  # type: ignore[attr-defined]
    height, width = bands.shape[1:]
    out = np.empty((height, width, 4), dtype=np.uint8)
    if count == 1 and _has_colormap(src):
        cmap = src.colormap(1)  # type: ignore[attr-defined]
        lut = np.zeros((256, 4), dtype=np.uint8)
        for index, rgba in cmap.items():
            lut[index] = rgba
        out[:] = lut[bands[0]]
        if src.nodata is not None:  # type: ignore[attr-defined]
            out[..., 3][bands[0] == int(src.nodata)] = 0  # type: ignore[attr-defined]
        return out
    if count in (1, 2):
        out[..., :3] = bands[0][..., None]
    else:
        out[..., :3] = bands[:3].transpose(1, 2, 0)
    if count == 4 and src.colorinterp[3].name == "alpha":  # type: ignore[attr-defined]
        out[..., 3] = bands[3]  # the alpha we already read: no second read for the mask
    else:
        out[..., 3] = src.dataset_mask()  # type: ignore[attr-defined]
    return out


def _has_colormap(src: object) -> bool:
    try:
        src.colormap(1)  # type: ignore[attr-defined]
    except ValueError:
        return False
    return True


def _average_down(pixels: Pixels, factor: int) -> Pixels:
    """Box-average ``pixels`` by ``factor``, each side rounded up (as libjpeg's scaling)."""
    image = Image.fromarray(pixels, "RGBA")
    return np.asarray(image.reduce(factor))


def _undecodable(exc: Exception) -> SourceBadResponse:
    return SourceBadResponse(
        f"the upstream image could not be decoded: {exc}",
        hint="the server sent a truncated or damaged image; try again, or check its format",
    )


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


def choose_format(fmt: str, mask: Mask | None) -> Format:
    """The concrete format for ``fmt``: ``auto`` is JPEG when fully opaque, else PNG."""
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt == "auto":
        return "jpeg" if mask is None or bool(mask.min() == 255) else "png"
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; one of auto, {', '.join(FORMATS)}")
    return fmt


def encode(
    bands: Bands,
    mask: Mask | None,
    fmt: str,
    *,
    jpeg_quality: int = JPEG_QUALITY,
    png_compression: int = PNG_COMPRESSION,
    webp_quality: int = WEBP_QUALITY,
) -> bytes:
    """Encode (1 or 3, h, w) uint8 bands and their mask (None: opaque) as ``fmt``.

    ``fmt`` is png, jpeg (jpg), webp or auto (:func:`choose_format`). JPEG has no alpha:
    masked pixels keep their colour (black where nothing was read). Grey+alpha or RGBA
    bands (2 or 4) with no ``mask`` take their last band as the mask.
    """
    if mask is None and bands.shape[0] in (2, 4):
        bands, mask = bands[:-1], bands[-1]
    chosen = choose_format(fmt, mask)
    pixels = interleave(bands, mask)
    if chosen == "jpeg":
        colorspace = {1: "GRAY", 2: "GRAY", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
        if pixels.shape[2] == 2:  # grey + alpha: libjpeg takes the grey channel alone
            pixels = np.ascontiguousarray(pixels[..., :1])
        data: bytes = simplejpeg.encode_jpeg(
            pixels, jpeg_quality, colorspace, colorsubsampling="420"
        )
        return data
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    if chosen == "png":
        return encode_png(pixels, png_compression)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=webp_quality, method=WEBP_METHOD)
    return out.getvalue()


def encode_png(pixels: Pixels, level: int = PNG_COMPRESSION) -> bytes:
    """A PNG of (h, w, 1-4) pixels: each row "Up"-filtered (numpy), then zlib at ``level``.

    Twice as fast as Pillow's or libpng's writer at level 1 for as many bytes on imagery
    (they try five filters per row; "Up" alone does as well on photos and costs one
    vectorised subtraction): measured in benchmarks/RESULTS.md.
    """
    height, width, channels = pixels.shape
    flat = pixels.reshape(height, width * channels)
    rows = np.empty((height, width * channels + 1), dtype=np.uint8)
    rows[:, 0] = 2  # filter type Up: each byte minus the byte above (0 above the first row)
    rows[:1, 1:] = flat[:1]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    color_type = PNG_COLOR_TYPES[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.data, level)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def interleave(bands: Bands, mask: Mask | None) -> Pixels:
    """(h, w, count [+1]) contiguous pixels of ``bands`` and ``mask``, copying only if needed.

    When ``bands`` and ``mask`` are the RGB and alpha views of one interleaved RGBA
    buffer (what :func:`decode` and the mosaic hand out), that buffer is returned as is.
    """
    count, height, width = bands.shape
    if count not in (1, 3):
        raise ValueError(f"encode takes 1 or 3 bands, not {count}")
    channels = count + (mask is not None)
    if (
        mask is not None
        and count == 3
        and bands.strides == (1, 4 * width, 4)
        and mask.strides == (4 * width, 4)
        and _address(mask) == _address(bands) + 3
    ):
        buffer: Pixels = np.lib.stride_tricks.as_strided(
            bands, shape=(height, width, 4), strides=(4 * width, 4, 1), writeable=False
        )
        return buffer
    out = np.empty((height, width, channels), dtype=np.uint8)
    out[..., :count] = bands.transpose(1, 2, 0)
    if mask is not None:
        out[..., count] = mask
    return out


BAND_FIRST_ROWS = 128  # rows per block of :func:`band_first` (2 MB of uint32 at 4096 px)


def band_first(rgba: Bands, out: Bands) -> None:
    """Copy ``rgba`` (4, h, w) into ``out`` (4, h, w, band-first), a block of rows at a time.

    A view of interleaved pixels makes numpy's copy gather single bytes 4 apart. Each
    pixel read as one little-endian uint32 instead, band b is ``pixel >> 8b`` cast to
    uint8: 2x faster on 16 MB, and the blocks stay in the CPU cache.
    """
    _, height, width = rgba.shape
    if rgba.shape[0] != 4 or rgba.strides[0] != 1 or rgba.strides[2] != 4:
        np.copyto(out, rgba, casting="no")  # not interleaved: nothing to gain
        return
    pixels = rgba.transpose(1, 2, 0).view("<u4")[..., 0]  # (h, w): R | G << 8 | ...
    shifted = np.empty((min(height, BAND_FIRST_ROWS), width), dtype=np.uint32)
    for top in range(0, height, BAND_FIRST_ROWS):
        block = pixels[top : top + BAND_FIRST_ROWS]
        rows = slice(top, top + block.shape[0])
        np.copyto(out[0, rows], block, casting="unsafe")  # keeps the low byte: red
        part = shifted[: block.shape[0]]
        for band in (1, 2, 3):
            np.right_shift(block, 8 * band, out=part)
            np.copyto(out[band, rows], part, casting="unsafe")


def is_interleaved(rgba: Bands) -> bool:
    """Whether ``rgba`` (4, h, w) views interleaved RGBA pixels (a pixel is 4 adjacent bytes)."""
    return rgba.shape[0] == 4 and rgba.strides[0] == 1 and rgba.strides[2] == 4


def _address(array: npt.NDArray[np.uint8]) -> int:
    return int(array.__array_interface__["data"][0])
