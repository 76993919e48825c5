"""Encode a read's pixels as GeoTIFF, NPY, PNG or JPEG: the one module that calls encoders.

Every function here blocks (GDAL, zlib): call :func:`encode` in the executor.

Layouts:

- ``tif``: a georeferenced GeoTIFF (CRS, transform), 3 bands RGB uint8, deflate, with an
  internal mask band (``dataset.dataset_mask()``: 255 = data inside an AOI, 0 = masked).
- ``npy``: ``numpy.load(io.BytesIO(body))`` gives a uint8 array of shape
  ``(4, height, width)``: red, green, blue, mask (255 = data inside an AOI, 0 = masked).
  Georeferencing comes in the headers ``X-CRS`` (``EPSG:n`` or WKT) and ``X-Transform``
  (``a,b,c,d,e,f``, rasterio's affine order: x = a*col + b*row + c, y = d*col + e*row + f).
- ``png``: RGBA, alpha = mask. ``jpg``: RGB only (masked pixels are black).
"""

from __future__ import annotations

import io

import attrs
import numpy as np
import numpy.typing as npt
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from streaming.decode import RGBA
from streaming.encode import encode_jpeg, encode_png

BLOCK_ROWS = 128  # rows per block of the NPY copy (2 MB of uint32 at 4096 px)
MEDIA_TYPES = {
    "tif": "image/tiff",
    "npy": "application/x-npy",
    "png": "image/png",
    "jpg": "image/jpeg",
}


@attrs.frozen
class Encoded:
    """Encoded bytes and their media type."""

    body: bytes | memoryview  # NPY: a view of one buffer (see :func:`npy`)
    media_type: str


def encode(rgba: RGBA, crs: CRS, transform: Affine, fmt: str) -> Encoded:
    """``rgba`` (4 x h x w uint8, alpha = mask) in ``fmt`` (one of :data:`MEDIA_TYPES`)."""
    body: bytes | memoryview
    if fmt == "tif":
        body = geotiff(rgba, crs, transform)
    elif fmt == "npy":
        body = npy(rgba)
    elif fmt == "png":
        body = encode_png(rgba)
    elif fmt == "jpg":
        body = encode_jpeg(rgba)
    else:
        raise ValueError(f"no encoder for {fmt!r}")  # the routes parse the format first
    return Encoded(body, MEDIA_TYPES[fmt])


def geotiff(rgba: RGBA, crs: CRS, transform: Affine) -> bytes:
    """A GeoTIFF of the RGB bands, with the alpha band as its internal mask."""
    _, height, width = rgba.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "photometric": "RGB",
        "compress": "deflate",
    }
    if width >= 256 and height >= 256:  # tiled, so a reader can take parts of it
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(rgba[:3])
            dst.write_mask(rgba[3])
        return bytes(memfile.read())


def npy(rgba: RGBA) -> memoryview:
    """The NPY file of ``rgba`` (see the module's layout), as ``numpy.save`` writes it.

    One buffer holds the header and the band-first pixels, copied once from the read's
    (interleaved) buffer; the answer sends views of it (no ``BytesIO``, no ``getvalue``).
    """
    head = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": tuple(rgba.shape)}
    np.lib.format.write_array_header_1_0(head, header)
    start = head.tell()
    body = np.empty(start + rgba.size, dtype=np.uint8)
    body[:start] = np.frombuffer(head.getbuffer(), dtype=np.uint8)
    band_first(rgba, body[start:].reshape(rgba.shape))
    return body.data  # a memoryview of the whole buffer


def band_first(rgba: RGBA, out: npt.NDArray[np.uint8]) -> None:
    """Copy ``rgba`` into the C-ordered ``out``, a block of rows at a time.

    A read's pixels are a band-first view of interleaved RGBA: numpy's copy of it gathers
    single bytes 4 apart. Each pixel read as one little-endian uint32 instead, band b is
    ``pixel >> 8b`` cast to uint8: 2x faster on 16 MB, and the blocks stay in the CPU cache.
    """
    _, height, width = rgba.shape
    if rgba.shape[0] != 4 or rgba.strides[0] != 1 or rgba.strides[2] != 4:
        np.copyto(out, rgba, casting="no")  # not interleaved: nothing to gain
        return
    pixels = rgba.transpose(1, 2, 0).view("<u4")[..., 0]  # (h, w): R | G << 8 | ...
    shifted = np.empty((min(height, BLOCK_ROWS), width), dtype=np.uint32)
    for top in range(0, height, BLOCK_ROWS):
        block = pixels[top : top + BLOCK_ROWS]
        rows = slice(top, top + block.shape[0])
        np.copyto(out[0, rows], block, casting="unsafe")  # keeps the low byte: red
        for band in (1, 2, 3):
            part = shifted[: block.shape[0]]
            np.right_shift(block, 8 * band, out=part)
            np.copyto(out[band, rows], part, casting="unsafe")


def georef_headers(crs: CRS, transform: Affine) -> dict[str, str]:
    """``X-CRS`` and ``X-Transform`` of a read (every format carries them)."""
    epsg = crs.to_epsg()
    text = f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()
    coefficients = ",".join(repr(float(v)) for v in tuple(transform)[:6])
    return {"X-CRS": text, "X-Transform": coefficients}
