"""Every encode and decode of the tile routes, in one place (all blocking: run off the loop).

Upstream bytes that pass through are never decoded; this module is for conversions,
rendered tiles and cut metatiles.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from rasterio.io import MemoryFile

from streaming.decode import RGBA, check_complete, decode_rgba
from streaming.encode import encode_jpeg, encode_png
from streaming.gdal_env import thread_env

__all__ = ["MEDIA", "check_complete", "convert", "encode", "media_type", "transparent_png"]

MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def media_type(body: bytes, declared: str) -> str:
    """The media type of image ``body`` by its bytes; ``declared`` when they do not say.

    Servers label tiles ``application/octet-stream`` (or worse); a map client trusts the
    header, so the header says what the bytes are.
    """
    for magic, media in _MAGIC:
        if body.startswith(magic):
            return media
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return declared


def encode(rgba: RGBA, fmt: str) -> bytes:
    """``rgba`` (4, h, w) as ``fmt``: png, jpeg (alpha dropped) or webp."""
    if fmt == "png":
        return encode_png(rgba)
    if fmt == "jpeg":
        return encode_jpeg(rgba)
    count, height, width = rgba.shape
    thread_env()
    with MemoryFile() as memfile:
        with memfile.open(
            driver="WEBP", width=width, height=height, count=count, dtype="uint8", QUALITY=90
        ) as dst:
            dst.write(rgba)
        return bytes(memfile.read())


def convert(body: bytes, fmt: str, max_pixels: int) -> bytes:
    """Upstream image ``body`` re-encoded as ``fmt``."""
    return encode(decode_rgba(body, max_pixels=max_pixels), fmt)


def cut(rgba: RGBA, offsets: list[tuple[int, int]], tile_px: int, fmt: str) -> list[bytes]:
    """The ``tile_px`` square tiles of ``rgba`` at each (col, row) offset, encoded."""
    return [encode(rgba[:, r : r + tile_px, c : c + tile_px], fmt) for c, r in offsets]


@cache
def transparent_png(tile_px: int) -> bytes:
    """A fully transparent PNG tile: the answer where the upstream has no data."""
    return encode_png(np.zeros((4, tile_px, tile_px), dtype=np.uint8))
