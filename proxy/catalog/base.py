"""The catalog interface: one storage Protocol per kind of record, behind one facade.

SQLite implements them today (``proxy.catalog.sqlite``); a shared database (PostgreSQL,
for several replicas) implements the same Protocols later and nothing above changes.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs


@attrs.frozen
class ServerRecord:
    """A stored server: its id, timestamps and full config (secrets included)."""

    id: str
    config: dict[str, Any]
    created_at: str
    updated_at: str


class ServerStore(Protocol):
    """Storage of imagery servers."""

    async def create(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server and return it with its new id."""

    async def get(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""

    async def all(self) -> list[ServerRecord]:
        """Every server, oldest first."""

    async def update(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config; ``None`` when there is no such server."""

    async def delete(self, server_id: str) -> bool:
        """Delete a server; ``False`` when there was none."""


@attrs.frozen(kw_only=True)
class ImageRecord:
    """A stored streaming image: its grid over a server, and its AOIs.

    ``crs`` is an ``EPSG:n`` string when the CRS has one, else WKT; ``transform`` holds the
    six affine coefficients ``a, b, c, d, e, f`` (rasterio's order); ``aois`` is a GeoJSON
    FeatureCollection in lon/lat.
    """

    id: str
    name: str
    server_id: str
    server_updated_at: str  # the server's version when the image was made
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    resolution_m: float
    aois: dict[str, Any]
    created_at: str


@attrs.frozen(kw_only=True)
class NewImage:
    """What makes an image (the store gives the id and the creation time)."""

    name: str
    server_id: str
    server_updated_at: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    resolution_m: float
    aois: dict[str, Any]


class ImageStore(Protocol):
    """Storage of streaming images."""

    async def create(self, image: NewImage) -> ImageRecord:
        """Store a new image and return it with its new id."""

    async def get(self, image_id: str) -> ImageRecord | None:
        """The image with ``image_id``, or ``None``."""

    async def all(self) -> list[ImageRecord]:
        """Every image, oldest first."""

    async def delete(self, image_id: str) -> bool:
        """Delete an image; ``False`` when there was none."""


# Next kinds of record, one Protocol each: JobStore (materialize and seed jobs) and
# CellStore (a job's cells and their states), each then a field of Catalog below.


class Database(Protocol):
    """The connection every store of one catalog shares."""

    async def ping(self) -> None:
        """Raise when the database cannot answer (readiness)."""

    async def close(self) -> None:
        """Release the database."""


@attrs.frozen
class Catalog:
    """The service's state: one store per kind of record, over one database."""

    database: Database
    servers: ServerStore
    images: ImageStore

    async def ping(self) -> None:
        """Raise when the catalog cannot answer (readiness)."""
        await self.database.ping()

    async def close(self) -> None:
        """Release the catalog."""
        await self.database.close()
