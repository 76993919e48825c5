"""Pure pixel work: paste decoded pieces into a canvas and warp it onto an output grid.

Everything here is synchronous and CPU-bound; callers run it in an executor. Pixels stay
interleaved (h, w, 4) RGBA from decode to encode (see :mod:`streaming.codecs`): each
tile is copied once, into the canvas, and the output is handed to the encoder as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject

from streaming.codecs import Pixels, decode_pixels
from streaming.decode import RGBA, is_blank
from streaming.decoded import TileMemo
from streaming.errors import SourceBadResponse

# GDAL splits one warp over this many threads (it releases the GIL), which cuts a single
# preview's latency; under a burst the executor's own parallelism takes over.
WARP_THREADS = 2
# Pillow's filters for the same-CRS resize; other resamplings go through GDAL's warper.
PIL_FILTERS = {
    Resampling.nearest: Image.Resampling.NEAREST,
    Resampling.bilinear: Image.Resampling.BILINEAR,
    Resampling.cubic: Image.Resampling.BICUBIC,
    Resampling.lanczos: Image.Resampling.LANCZOS,
}
BOX_SLACK = 1e-6  # px: float noise must not push a box past the canvas


@attrs.frozen
class Piece:
    """Encoded bytes of one upstream image and where its pixels go on the canvas."""

    data: bytes | None  # None: the upstream had nothing there
    col_off: int
    row_off: int
    width: int
    height: int
    label: str  # names the piece in errors (a tile index or a bbox part)
    reduce: int = 1  # decode at 1/reduce scale; width and height are the reduced size


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

    rgba: RGBA  # (4, h, w) view of interleaved pixels
    missing: int  # pieces the upstream had no data for
    blank: int  # pieces that decoded to a transparent or uniform image


def compose(
    pieces: Sequence[Piece],
    canvas: Grid,
    output: Grid,
    *,
    max_pixels: int,
    resampling: Resampling = Resampling.bilinear,
    memo: TileMemo | None = None,
) -> Composite:
    """Decode ``pieces`` into ``canvas`` and warp the canvas onto ``output``.

    ``memo`` keeps decoded pieces: one it holds is pasted without decoding.
    """
    pixels = np.zeros((canvas.height, canvas.width, 4), dtype=np.uint8)
    missing = blank = 0
    for piece in pieces:
        if piece.data is None:
            missing += 1
            continue
        image, empty = _decoded(piece, max_pixels, memo)
        blank += empty
        _paste(pixels, image, piece.col_off, piece.row_off)
    return Composite(warp(pixels, canvas, output, resampling).transpose(2, 0, 1), missing, blank)


def predecode(pieces: Sequence[Piece], max_pixels: int, memo: TileMemo) -> None:
    """Decode ``pieces`` into ``memo`` ahead of :func:`compose`, which pastes them.

    A piece that fails is skipped: compose decodes it again and reports the error.
    """
    for piece in pieces:
        try:
            _decoded(piece, max_pixels, memo)
        except Exception:  # noqa: S110 - compose raises it, with the read's context
            pass


def _decoded(piece: Piece, max_pixels: int, memo: TileMemo | None) -> tuple[Pixels, bool]:
    """The pixels of ``piece`` (checked against its size) and whether they are blank."""
    assert piece.data is not None
    found = memo.get(piece.data, piece.reduce) if memo is not None else None
    if found is None:
        expect = (piece.width * piece.reduce, piece.height * piece.reduce)
        image = decode_pixels(piece.data, max_pixels=max_pixels, expect=expect, reduce=piece.reduce)
        found = image, is_blank(image.transpose(2, 0, 1))
        if memo is not None and image.shape[:2] == (piece.height, piece.width):
            memo.put(piece.data, piece.reduce, *found)
    image = found[0]
    if image.shape[:2] != (piece.height, piece.width):
        raise SourceBadResponse(
            f"{piece.label}: upstream image is {image.shape[1]}x{image.shape[0]} px "
            f"at 1/{piece.reduce} scale, expected {piece.width}x{piece.height}",
            hint="check the configured tile size",
        )
    return found


def _paste(canvas: Pixels, image: Pixels, col_off: int, row_off: int) -> None:
    """Copy ``image`` into ``canvas`` at the offsets, clipped to the canvas."""
    height, width = canvas.shape[:2]
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1 = min(row_off + image.shape[0], height)
    c1 = min(col_off + image.shape[1], width)
    if r1 <= r0 or c1 <= c0:
        return
    canvas[r0:r1, c0:c1] = image[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]


def warp(pixels: Pixels, src: Grid, dst: Grid, resampling: Resampling) -> Pixels:
    """Reproject/resample interleaved RGBA ``pixels`` onto ``dst``; alpha marks data.

    Between grids of one CRS that differ only by scale and offset (a preview in the
    tiles' own CRS), a separable resize does the job several times faster than GDAL's
    general warper; anything else goes through the warper.
    """
    if src == dst:
        return pixels
    fast = resize(pixels, src, dst, resampling)
    if fast is not None:
        return fast
    out = np.zeros((dst.height, dst.width, 4), dtype=np.uint8)
    # Band-first views of the interleaved buffers: GDAL reads and writes them in place.
    reproject(
        source=pixels.transpose(2, 0, 1),
        destination=out.transpose(2, 0, 1),
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


def resize(pixels: Pixels, src: Grid, dst: Grid, resampling: Resampling) -> Pixels | None:
    """``dst`` resampled from ``pixels`` when it is a scaled, shifted box inside ``src``.

    None when the grids differ by more (CRS, rotation, a flip) or ``dst`` reaches past
    ``src``, where the warper must mark the outside as transparent. Pillow weighs colour
    by alpha (premultiplied) and widens its kernel when shrinking, as GDAL's warper does.
    """
    fil = PIL_FILTERS.get(resampling)
    s, d = src.transform, dst.transform
    if fil is None or src.crs != dst.crs or s.b or s.d or d.b or d.d:
        return None
    if s.a <= 0 or d.a <= 0 or s.e >= 0 or d.e >= 0:
        return None
    left, top = (d.c - s.c) / s.a, (d.f - s.f) / s.e
    right, bottom = left + dst.width * d.a / s.a, top + dst.height * d.e / s.e
    box = (
        _snap(left, src.width),
        _snap(top, src.height),
        _snap(right, src.width),
        _snap(bottom, src.height),
    )
    if min(box) < 0 or box[2] > src.width or box[3] > src.height:
        return None
    # Pillow premultiplies RGBA by alpha around a resize (two passes over the canvas); an
    # opaque canvas is its own premultiplied form, so it is handed over as such.
    opaque = bool((pixels.reshape(-1).view("<u4") >= 0xFF000000).all())  # alpha: high byte
    if _is_crop(box, dst):
        return _crop(pixels, box, dst, opaque or fil == Image.Resampling.NEAREST)
    image = Image.fromarray(pixels, "RGBa" if opaque else "RGBA")
    resized = image.resize((dst.width, dst.height), fil, box=box)
    return np.asarray(resized.convert("RGBA") if not opaque else resized)


def _is_crop(box: tuple[float, float, float, float], dst: Grid) -> bool:
    """True when ``box`` is ``dst``'s size on whole pixels: a resize that moves nothing."""
    left, top, right, bottom = box
    return (
        abs(right - left - dst.width) < BOX_SLACK
        and abs(bottom - top - dst.height) < BOX_SLACK
        and abs(left - round(left)) < BOX_SLACK
        and abs(top - round(top)) < BOX_SLACK
    )


def _crop(
    pixels: Pixels, box: tuple[float, float, float, float], dst: Grid, premultiplied: bool
) -> Pixels:
    """The pixels Pillow's resize gives for a crop box, without resampling them.

    At scale 1 on whole pixels every filter weighs the source pixel 1 and its neighbours 0,
    so a resize is a copy (tested bit for bit against Pillow): the crop is a writable view
    of the canvas, no copy. Only the premultiplication round trip Pillow makes around an
    RGBA resize (not for nearest, nor for an opaque canvas) changes pixels: it is kept.
    """
    left, top = round(box[0]), round(box[1])
    view = pixels[top : top + dst.height, left : left + dst.width]
    whole = view.shape[:2] == pixels.shape[:2]
    if premultiplied or whole:  # Pillow copies a whole-image box without premultiplying
        return view
    image = Image.fromarray(np.ascontiguousarray(view), "RGBA")
    return np.array(image.convert("RGBa").convert("RGBA"))


def _snap(value: float, limit: int) -> float:
    """``value`` with float noise around 0 and ``limit`` removed."""
    for edge in (0, limit):
        if abs(value - edge) < BOX_SLACK:
            return float(edge)
    return value
