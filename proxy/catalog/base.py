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


# Next kinds of record, one Protocol each beside ServerStore: ImageStore (streaming
# images and their AOIs), JobStore (materialize and seed jobs) and CellStore (a job's
# cells and their states), each then a field of Catalog below.


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

    async def ping(self) -> None:
        """Raise when the catalog cannot answer (readiness)."""
        await self.database.ping()

    async def close(self) -> None:
        """Release the catalog."""
        await self.database.close()
