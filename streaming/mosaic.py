"""Pure pixel work: paste decoded pieces into a canvas and warp it onto an output grid.

Everything here is synchronous and CPU-bound; callers run it in an executor. Pixels stay
interleaved (h, w, 4) RGBA from decode to encode (see :mod:`streaming.codecs`): each
tile is copied once, into the canvas, and the output is handed to the encoder as is. A
read at the canvas's own pixels (a window of an image) has no canvas: its tiles are
pasted straight into the output, which may be an encoder's band-first buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import attrs
import numpy as np
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject

from streaming.codecs import Bands, Pixels, decode_pixels, is_interleaved
from streaming.decode import RGBA, is_blank
from streaming.decoded import TileMemo
from streaming.errors import SourceBadResponse
from streaming.gdal_env import thread_env

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
# Makes the zeroed (4, height, width) output a crop is pasted into (see compose).
Allocate = Callable[[int, int], Bands]


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
    allocate: Allocate | None = None,
) -> Composite:
    """Decode ``pieces`` into ``canvas`` and warp the canvas onto ``output``.

    See :class:`Mosaic`, which this makes and finishes at once.
    """
    mosaic = Mosaic(canvas, output, max_pixels=max_pixels, memo=memo, allocate=allocate)
    return mosaic.finish(pieces, resampling)


class Mosaic:
    """The pixels of one read, its pieces pasted in any order, from any thread.

    When ``output`` is whole canvas pixels at scale 1 (a window at the image's own
    resolution), pieces are pasted straight into the output: no canvas, no warp, and the
    pixels are the decoded ones, untouched; ``allocate(height, width)`` makes that output
    (zeroed (4, h, w), interleaved or band-first: an encoder's own buffer), interleaved
    zeros by default. Otherwise pieces go into a canvas that :meth:`finish` warps.

    A read pastes tiles as they arrive (:meth:`paste`, distinct pieces from any threads), then
    :meth:`finish` pastes the rest. ``memo`` keeps decoded pieces: one it holds is pasted
    without decoding.
    """

    def __init__(
        self,
        canvas: Grid,
        output: Grid,
        *,
        max_pixels: int,
        memo: TileMemo | None = None,
        allocate: Allocate | None = None,
    ) -> None:
        self.canvas, self.output, self.max_pixels, self.memo = canvas, output, max_pixels, memo
        self.offsets = crop_offsets(canvas, output)
        self._allocate = allocate
        self._target: Bands | None = None  # made by the first paste, in the executor
        self._pasted: set[int] = set()  # indices of the pieces in the target
        self._blank = 0
        self._lock = threading.Lock()

    @property
    def target(self) -> Bands:
        """The pixels pieces are pasted into: the output, or the canvas (zeroed at first)."""
        with self._lock:
            if self._target is None:
                if self.offsets is None:
                    self._target = interleaved_zeros(self.canvas.height, self.canvas.width)
                else:
                    allocate = self._allocate or interleaved_zeros
                    self._target = allocate(self.output.height, self.output.width)
            return self._target

    def paste(self, index: int, piece: Piece) -> None:
        """Decode piece ``index`` (it raises as decoding does) and paste it."""
        if piece.data is None:
            return
        target = self.target
        planar = not is_interleaved(target)
        bands, blank, kept = _decoded(piece, self.max_pixels, self.memo, planar)
        left, top = self.offsets or (0, 0)
        placed = _paste(target, bands, piece.col_off - left, piece.row_off - top)
        if not kept and self.memo is not None:
            # Kept in the target's layout: a band-first target (an NPY answer) keeps the
            # band-first copy of what just landed, which the next read pastes in 9 us
            # instead of 75 (10 us to copy; benchmarks/RESULTS.md, reads round 6).
            keep = placed.copy() if planar and placed is not None else bands
            self.memo.put(piece.data, piece.reduce, keep, blank)
        with self._lock:
            self._pasted.add(index)
            self._blank += blank

    def paste_ahead(self, batch: Sequence[tuple[int, Piece]]) -> None:
        """Paste the (index, piece) pairs that decode; :meth:`finish` redoes a failed one.

        A piece that fails here is left for :meth:`finish`, which raises its error with
        the read's context.
        """
        for index, piece in batch:
            try:
                self.paste(index, piece)
            except Exception:  # noqa: S112 - finish decodes it again and raises
                continue

    def finish(self, pieces: Sequence[Piece], resampling: Resampling) -> Composite:
        """Paste the ``pieces`` not pasted yet, then warp the canvas onto the output."""
        missing = 0
        for index, piece in enumerate(pieces):
            if piece.data is None:
                missing += 1
            elif index not in self._pasted:
                self.paste(index, piece)
        if self.offsets is not None:
            return Composite(self.target, missing, self._blank)
        pixels = self.target.transpose(1, 2, 0)
        warped = warp(pixels, self.canvas, self.output, resampling)
        return Composite(warped.transpose(2, 0, 1), missing, self._blank)


def interleaved_zeros(height: int, width: int) -> Bands:
    """Zeroed (4, height, width) pixels viewing one interleaved RGBA buffer."""
    return np.zeros((height, width, 4), dtype=np.uint8).transpose(2, 0, 1)


def crop_offsets(src: Grid, dst: Grid) -> tuple[int, int] | None:
    """(column, row) of ``dst`` in ``src`` when ``dst`` is whole ``src`` pixels at scale 1.

    None when the grids differ by more (CRS, rotation, a flip, scale, a fraction of a
    pixel) or ``dst`` reaches past ``src``.
    """
    s, d = src.transform, dst.transform
    if s.b or s.d or d.b or d.d or s.a <= 0 or d.a <= 0 or s.e >= 0 or d.e >= 0:
        return None
    left, top = (d.c - s.c) / s.a, (d.f - s.f) / s.e
    width, height = dst.width * d.a / s.a, dst.height * d.e / s.e
    col, row = round(left), round(top)
    if (
        abs(left - col) > BOX_SLACK
        or abs(top - row) > BOX_SLACK
        or abs(width - dst.width) > BOX_SLACK
        or abs(height - dst.height) > BOX_SLACK
        or col < 0
        or row < 0
        or col + dst.width > src.width
        or row + dst.height > src.height
        or src.crs != dst.crs
    ):
        return None
    return col, row


def predecode(batch: Sequence[tuple[int, Piece]], max_pixels: int, memo: TileMemo) -> None:
    """Decode the pieces of ``batch`` ((index, piece) pairs) into ``memo`` ahead of a mosaic.

    A piece that fails is skipped: the mosaic decodes it again and reports the error.
    """
    for _, piece in batch:
        try:
            bands, blank, kept = _decoded(piece, max_pixels, memo, planar=False)
        except Exception:  # noqa: S112 - the mosaic raises it, with the read's context
            continue
        if not kept and piece.data is not None:
            memo.put(piece.data, piece.reduce, bands, blank)


def _decoded(
    piece: Piece, max_pixels: int, memo: TileMemo | None, planar: bool
) -> tuple[Bands, bool, bool]:
    """The (4, h, w) pixels of ``piece`` (checked against its size), whether they are
    blank, and whether they came from ``memo`` (else they were decoded now).

    ``planar``: whether band-first pixels kept in the memo are wanted. Into interleaved
    pixels they paste slower (261 us) than a decode does (145 + 7 us): a miss then.
    """
    assert piece.data is not None
    found = memo.get(piece.data, piece.reduce) if memo is not None else None
    if found is not None and (planar or is_interleaved(found[0])):
        (bands, blank), kept = found, True
    else:
        expect = (piece.width * piece.reduce, piece.height * piece.reduce)
        image = decode_pixels(piece.data, max_pixels=max_pixels, expect=expect, reduce=piece.reduce)
        bands = image.transpose(2, 0, 1)
        blank, kept = is_blank(bands), False
    if bands.shape[1:] != (piece.height, piece.width):
        raise SourceBadResponse(
            f"{piece.label}: upstream image is {bands.shape[2]}x{bands.shape[1]} px "
            f"at 1/{piece.reduce} scale, expected {piece.width}x{piece.height}",
            hint="check the configured tile size",
        )
    return bands, blank, kept


def _paste(target: Bands, bands: Bands, col_off: int, row_off: int) -> Bands | None:
    """Copy ``bands`` into ``target`` (both (4, h, w), any layout) at the offsets, clipped
    to the target; the part of ``target`` it filled when all of it landed, else None.

    One numpy copy whatever the layouts: into a band-first target (an NPY answer's own
    buffer) it splits interleaved pixels as they land. band_first's 14 calls were faster
    alone (50 against 75 us), but each call lets go of the GIL and waits to take it back
    from the event loop, busy taking the other tiles in: one copy made a cold read of
    81 tiles 4 % faster (benchmarks/RESULTS.md, reads round 6).
    """
    height, width = target.shape[1:]
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1 = min(row_off + bands.shape[1], height)
    c1 = min(col_off + bands.shape[2], width)
    if r1 <= r0 or c1 <= c0:
        return None
    part = bands[:, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]
    placed = target[:, r0:r1, c0:c1]
    np.copyto(placed, part)
    return placed if part.shape == bands.shape else None


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
    thread_env()
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
    image = Image.fromarray(pixels, "RGBa" if opaque else "RGBA")
    resized = image.resize((dst.width, dst.height), fil, box=box)
    return np.asarray(resized.convert("RGBA") if not opaque else resized)


def _snap(value: float, limit: int) -> float:
    """``value`` with float noise around 0 and ``limit`` removed."""
    for edge in (0, limit):
        if abs(value - edge) < BOX_SLACK:
            return float(edge)
    return value
