"""Build a missing tile-cache level from a neighbouring one: downsample finer tiles, crop a coarser.

A tile cache may skip levels; a tile of a skipped level is made from the ``n`` x ``n``
tiles of a finer level, or from one cell of a coarser tile. Pure and CPU-bound (decode,
numpy, encode): callers run it in an executor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streaming.codecs import Pixels, decode_pixels, encode_png
from streaming.errors import SourceBadResponse


def downsample_tiles(datas: Sequence[bytes | None], n: int, size: int, max_pixels: int) -> bytes:
    """One ``size`` px PNG from ``n`` x ``n`` finer tiles (row by row), alpha-weighted.

    A missing tile (``None``) is transparent, so the edge of the data stays transparent
    instead of darkening towards black.
    """
    canvas = np.zeros((size * n, size * n, 4), dtype=np.float32)
    for k, data in enumerate(datas):
        if data is not None:
            j, i = divmod(k, n)
            pixels = _sized(decode_pixels(data, max_pixels=max_pixels, expect=(size, size)), size)
            canvas[j * size : (j + 1) * size, i * size : (i + 1) * size] = pixels
    canvas[..., :3] *= canvas[..., 3:] / 255
    blocks = canvas.reshape(size, n, size, n, 4).sum(axis=(1, 3))
    alpha = blocks[..., 3]
    out = np.zeros((size, size, 4), dtype=np.uint8)
    covered = alpha > 0
    out[covered, :3] = np.clip(np.round(blocks[covered, :3] * 255 / alpha[covered, None]), 0, 255)
    out[..., 3] = np.round(alpha / (n * n)).astype(np.uint8)
    return encode_png(out)


def crop_tile(data: bytes, n: int, col: int, row: int, size: int, max_pixels: int) -> bytes:
    """The (col, row) cell of an ``n`` x ``n`` split of a coarser tile, upsampled to ``size``."""
    pixels = _sized(decode_pixels(data, max_pixels=max_pixels, expect=(size, size)), size)
    part = size // n
    crop = pixels[row * part : (row + 1) * part, col * part : (col + 1) * part]
    return encode_png(crop.repeat(n, axis=0).repeat(n, axis=1))


def _sized(pixels: Pixels, size: int) -> Pixels:
    if pixels.shape[:2] != (size, size):
        raise SourceBadResponse(f"a tile is {pixels.shape[1]}x{pixels.shape[0]} px, not {size}")
    return pixels
