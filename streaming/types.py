"""Small value types shared by the streaming library and the service."""

from __future__ import annotations

from typing import NamedTuple


class BBox(NamedTuple):
    """A bounding box in some CRS: left, bottom, right, top."""

    left: float
    bottom: float
    right: float
    top: float

    @property
    def width(self) -> float:
        """Width in CRS units."""
        return self.right - self.left

    @property
    def height(self) -> float:
        """Height in CRS units."""
        return self.top - self.bottom


class TileIndex(NamedTuple):
    """A tile of a tile matrix set: column, row, matrix (zoom) index."""

    x: int
    y: int
    z: int
