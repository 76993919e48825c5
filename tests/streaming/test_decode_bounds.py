"""Issue 9 item 2: an image's size is read from its header and checked against what the
request asked for before any pixel is decoded, so oversized upstream images cost memory
in proportion to the request, not to the image."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from streaming.decode import decode_rgba
from streaming.encode import encode_png
from streaming.errors import SourceImageTooLarge


def zero_png(width: int, height: int) -> bytes:
    """A grey PNG of zeros, compressed row by row (8192² is ~70 kB, made in ~0.2 s)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_larger_image_than_asked_is_refused_from_its_header():
    with pytest.raises(SourceImageTooLarge, match="8192x8192 px, larger than the 256x256"):
        decode_rgba(zero_png(8192, 8192), expect=(256, 256))


def test_a_small_margin_is_allowed():
    rgba = np.zeros((4, 258, 257), dtype=np.uint8)
    assert decode_rgba(encode_png(rgba), expect=(256, 256)).shape == (4, 258, 257)
    with pytest.raises(SourceImageTooLarge):
        decode_rgba(encode_png(np.zeros((4, 256, 300), dtype=np.uint8)), expect=(256, 256))


STORM = textwrap.dedent(
    """
    import asyncio, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from streaming.mosaic import Grid, Piece, compose
    from streaming.errors import SourceImageTooLarge
    from tests.streaming.test_decode_bounds import zero_png
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    big = zero_png(8192, 8192)
    grid = Grid(CRS.from_epsg(3857), from_origin(0, 256, 1, 1), 256, 256)

    def one():
        try:
            compose([Piece(big, 0, 0, 256, 256, "tile")], grid, grid, max_pixels=8192 * 8192)
        except SourceImageTooLarge:
            return 1
        return 0

    async def storm():
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(8) as pool:
            return sum(await asyncio.gather(*(loop.run_in_executor(pool, one) for _ in range(30))))

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = asyncio.run(storm())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(refused, (after - before) // 1024)
    """
)


def test_a_storm_of_oversized_images_leaves_peak_memory_bounded():
    # In a fresh process, so the peak (ru_maxrss) is this storm's alone. One 8192² image
    # decoded to RGBA is 256 MiB (512 MiB with the bands read): 30 would be many GiB.
    done = subprocess.run(
        [sys.executable, "-c", STORM], capture_output=True, text=True, timeout=120, check=True
    )
    refused, grown_mib = map(int, done.stdout.split())
    assert refused == 30
    assert grown_mib < 100, f"peak RSS grew by {grown_mib} MiB"
