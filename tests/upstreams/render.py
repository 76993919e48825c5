"""Render ground-truth tiles and bbox images the way real upstream servers would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from streaming.encode import encode_jpeg, encode_png

MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


class GroundTruthRenderer:
    """Cuts tiles and bboxes out of the ground-truth GeoTIFF."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def tile(
        self, tms: TileMatrixSet, x: int, y: int, z: int, size: int, fmt: str = "png"
    ) -> bytes | None:
        """The encoded tile, or None when the tile is outside the ground truth."""
        with Reader(str(self.path), tms=tms) as src:
            if not src.tile_exists(x, y, z):
                return None
            try:
                img = src.tile(x, y, z, tilesize=size, resampling_method="bilinear")
            except TileOutsideBounds:
                return None
        return _encode(img.data, img.mask, fmt)

    def bbox(
        self,
        bbox: tuple[float, float, float, float],
        crs: CRS,
        width: int,
        height: int,
        fmt: str = "png",
    ) -> bytes:
        """The encoded image of ``bbox`` (in ``crs``) at ``width`` x ``height``."""
        with Reader(str(self.path)) as src:
            img = src.part(
                bbox,
                dst_crs=crs,
                bounds_crs=crs,
                width=width,
                height=height,
                max_size=None,
                resampling_method="bilinear",
            )
        return _encode(img.data, img.mask, fmt)


def _encode(data: np.ndarray, mask: np.ndarray, fmt: str) -> bytes:
    rgba = np.concatenate([data.astype(np.uint8), mask[None].astype(np.uint8)])
    return encode_jpeg(rgba) if fmt in ("jpeg", "jpg") else encode_png(rgba)
