"""The source interface: what the streaming library needs from an upstream.

A source either serves tiles of a tile matrix set (:class:`TileSource`) or renders an
arbitrary bbox at a size in a CRS (:class:`BBoxSource`). The service implements these
over HTTP (``proxy.upstream``); a detector can implement them in-process.
Sources raise :class:`streaming.errors.SourceError` subclasses, never transport errors.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs
from morecantile import TileMatrixSet
from rasterio.crs import CRS

from streaming.types import BBox, TileIndex


@attrs.frozen
class FetchedImage:
    """Encoded image bytes as the upstream sent them.

    ``etag`` and ``last_modified`` are the upstream's validators, when it gave them: a
    cache sends them back to revalidate the image conditionally.
    """

    data: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None


@runtime_checkable
class TileSource(Protocol):
    """A source of tiles of one tile matrix set."""

    @property
    def tms(self) -> TileMatrixSet:
        """The tile matrix set; matrix ids are "0".."n-1", coarse to fine."""

    @property
    def min_zoom(self) -> int:
        """Coarsest matrix the source serves."""

    @property
    def max_zoom(self) -> int:
        """Finest matrix the source serves."""

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        """Fetch one tile; ``None`` when the upstream has no tile there (404/204/empty)."""


@runtime_checkable
class BBoxSource(Protocol):
    """A source that renders any bbox at a requested size."""

    @property
    def crs_list(self) -> list[CRS]:
        """CRSs the source can render in, preferred first."""

    @property
    def max_size(self) -> tuple[int, int]:
        """Largest (width, height) of one request; bigger reads are split."""

    async def fetch_bbox(self, bbox: BBox, crs: CRS, width: int, height: int) -> FetchedImage:
        """Render ``bbox`` (in ``crs``) as an image of ``width`` x ``height`` pixels."""


Source = TileSource | BBoxSource
