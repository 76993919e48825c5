"""Pure pixel work: paste decoded pieces into a canvas and warp it onto an output grid.

Everything here is synchronous and CPU-bound; callers run it in an executor.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject

from streaming.decode import RGBA, decode_rgba, is_blank
from streaming.errors import SourceBadResponse

# GDAL splits one warp over this many threads (it releases the GIL), which cuts a single
# preview's latency; under a burst the executor's own parallelism takes over.
WARP_THREADS = 2


@attrs.frozen
class Piece:
    """Encoded bytes of one upstream image and where its pixels go on the canvas."""

    data: bytes | None  # None: the upstream had nothing there
    col_off: int
    row_off: int
    width: int
    height: int
    label: str  # names the piece in errors (a tile index or a bbox part)


@attrs.frozen
class Grid:
    """A raster grid: CRS, transform and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int


@attrs.frozen
class Composite:
    """A warped output and what was found on the way."""

    rgba: RGBA
    missing: int  # pieces the upstream had no data for
    blank: int  # pieces that decoded to a transparent or uniform image


def compose(
    pieces: Sequence[Piece],
    canvas: Grid,
    output: Grid,
    *,
    max_pixels: int,
    resampling: Resampling = Resampling.bilinear,
) -> Composite:
    """Decode ``pieces`` into ``canvas`` and warp the canvas onto ``output``."""
    rgba = np.zeros((4, canvas.height, canvas.width), dtype=np.uint8)
    missing = blank = 0
    for piece in pieces:
        if piece.data is None:
            missing += 1
            continue
        expect = (piece.width, piece.height)
        image = decode_rgba(piece.data, max_pixels=max_pixels, expect=expect)
        if image.shape[1:] != (piece.height, piece.width):
            raise SourceBadResponse(
                f"{piece.label}: upstream image is {image.shape[2]}x{image.shape[1]} px, "
                f"expected {piece.width}x{piece.height}",
                hint="check the configured tile size",
            )
        blank += is_blank(image)
        _paste(rgba, image, piece.col_off, piece.row_off)
    return Composite(warp(rgba, canvas, output, resampling), missing, blank)


def _paste(canvas: RGBA, image: RGBA, col_off: int, row_off: int) -> None:
    """Copy ``image`` into ``canvas`` at the offsets, clipped to the canvas."""
    height, width = canvas.shape[1:]
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1 = min(row_off + image.shape[1], height)
    c1 = min(col_off + image.shape[2], width)
    if r1 <= r0 or c1 <= c0:
        return
    canvas[:, r0:r1, c0:c1] = image[:, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]


def warp(rgba: RGBA, src: Grid, dst: Grid, resampling: Resampling) -> RGBA:
    """Reproject/resample an RGBA canvas onto ``dst``; alpha marks where data landed."""
    if src == dst:
        return rgba
    out = np.zeros((4, dst.height, dst.width), dtype=np.uint8)
    reproject(
        source=rgba,
        destination=out,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=dst.transform,
        dst_crs=dst.crs,
        resampling=resampling,
        src_alpha=4,
        dst_alpha=4,
        num_threads=WARP_THREADS,
    )
    return out
