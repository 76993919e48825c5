"""The catalog interface: SQLite implements it; a shared database can later."""

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


class Catalog(Protocol):
    """Storage of the service's state."""

    async def create_server(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server and return it with its new id."""

    async def get_server(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""

    async def list_servers(self) -> list[ServerRecord]:
        """Every server, oldest first."""

    async def update_server(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config; ``None`` when there is no such server."""

    async def delete_server(self, server_id: str) -> bool:
        """Delete a server; ``False`` when there was none."""

    async def ping(self) -> None:
        """Raise when the store cannot answer (readiness)."""

    async def close(self) -> None:
        """Release the store."""
