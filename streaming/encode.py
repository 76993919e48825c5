"""Encode band-first RGBA arrays as PNG or JPEG (shorthands for :func:`streaming.codecs.encode`)."""

from __future__ import annotations

from streaming.codecs import JPEG_QUALITY, PNG_COMPRESSION, encode
from streaming.decode import RGBA


def encode_png(rgba: RGBA, compression: int = PNG_COMPRESSION) -> bytes:
    """Encode a (4, h, w) uint8 array as an RGBA PNG."""
    return encode(rgba[:3], rgba[3], "png", png_compression=compression)


def encode_jpeg(rgba: RGBA, quality: int = JPEG_QUALITY) -> bytes:
    """Encode the RGB bands of a (4, h, w) uint8 array as a JPEG (alpha is dropped)."""
    return encode(rgba[:3], rgba[3], "jpeg", jpeg_quality=quality)
