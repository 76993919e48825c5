"""Encode RGBA arrays as PNG or JPEG bytes."""

from __future__ import annotations

from rasterio.io import MemoryFile

from streaming.decode import RGBA


def encode_png(rgba: RGBA) -> bytes:
    """Encode a (4, h, w) uint8 array as an RGBA PNG."""
    return _encode(rgba, "PNG", {"zlevel": 6})


def encode_jpeg(rgba: RGBA, quality: int = 90) -> bytes:
    """Encode the RGB bands of a (4, h, w) uint8 array as a JPEG (alpha is dropped)."""
    return _encode(rgba[:3], "JPEG", {"quality": quality})


def _encode(bands: RGBA, driver: str, options: dict[str, int]) -> bytes:
    count, height, width = bands.shape
    with MemoryFile() as memfile:
        with memfile.open(
            driver=driver, width=width, height=height, count=count, dtype="uint8", **options
        ) as dst:
            dst.write(bands)
        return bytes(memfile.read())
