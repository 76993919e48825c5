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

from streaming.codecs import band_first
from streaming.decode import RGBA
from streaming.encode import encode_jpeg, encode_png
from streaming.gdal_env import thread_env

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


def encode(
    rgba: RGBA, crs: CRS, transform: Affine, fmt: str, target: NpyTarget | None = None
) -> Encoded:
    """``rgba`` (4 x h x w uint8, alpha = mask) in ``fmt`` (one of :data:`MEDIA_TYPES`).

    ``target``: the :class:`NpyTarget` the read pasted into, for ``npy``.
    """
    body: bytes | memoryview
    if fmt == "tif":
        body = geotiff(rgba, crs, transform)
    elif fmt == "npy":
        body = npy(rgba, target)
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
    thread_env()
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(rgba[:3])
            dst.write_mask(rgba[3])
        return bytes(memfile.read())


class NpyTarget:
    """Band-first pixels made inside an NPY file's buffer, for a read to paste its tiles into.

    The read's :class:`streaming.mosaic.Mosaic` calls it with the read's size (its
    ``allocate``); :func:`npy` of the very array it handed out returns
    the buffer as is: the read's pixels are never copied into the answer.
    """

    def __init__(self) -> None:
        self.body: npt.NDArray[np.uint8] | None = None
        self.pixels: RGBA | None = None

    def __call__(self, height: int, width: int) -> RGBA:
        """A zeroed (4, height, width) array inside a new NPY buffer."""
        self.body, start = _npy_buffer((4, height, width))
        self.pixels = self.body[start:].reshape(4, height, width)
        return self.pixels


def npy(rgba: RGBA, target: NpyTarget | None = None) -> memoryview:
    """The NPY file of ``rgba`` (see the module's layout), as ``numpy.save`` writes it.

    Pixels a read pasted into ``target`` are there already; others are copied once, into
    one buffer with the header. The answer sends views of it (no ``BytesIO`` copy).
    """
    if target is not None and target.body is not None and target.pixels is rgba:
        return target.body.data
    body, start = _npy_buffer(rgba.shape)
    band_first(rgba, body[start:].reshape(rgba.shape))
    return body.data  # a memoryview of the whole buffer


def _npy_buffer(shape: tuple[int, ...]) -> tuple[npt.NDArray[np.uint8], int]:
    """A zeroed buffer holding the NPY header of uint8 ``shape`` and room for its data."""
    head = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(head, header)
    start = head.tell()
    body = np.zeros(start + int(np.prod(shape)), dtype=np.uint8)  # calloc: pages zeroed lazily
    body[:start] = np.frombuffer(head.getbuffer(), dtype=np.uint8)
    return body, start


def georef_headers(crs: CRS, transform: Affine) -> dict[str, str]:
    """``X-CRS`` and ``X-Transform`` of a read (every format carries them)."""
    epsg = crs.to_epsg()
    text = f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()
    coefficients = ",".join(repr(float(v)) for v in tuple(transform)[:6])
    return {"X-CRS": text, "X-Transform": coefficients}
