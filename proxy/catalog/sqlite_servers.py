"""Imagery servers in the SQLite catalog."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from proxy.catalog.base import ServerRecord

if TYPE_CHECKING:
    from proxy.catalog.sqlite import SQLiteDatabase

# Named, never ``*``: a column added by a migration changes no query here.
COLUMNS = "id, config, created_at, updated_at"


class SQLiteServerStore:
    """:class:`~proxy.catalog.base.ServerStore` on the ``servers`` table."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self.database = database

    async def create(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server under a new id."""
        stamp = now()
        record = ServerRecord(uuid.uuid4().hex[:12], config, stamp, stamp)

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO servers ({COLUMNS}) VALUES (?, ?, ?, ?)",
                (record.id, orjson.dumps(config).decode(), stamp, stamp),
            )

        await self.database.run(insert)
        return record

    async def get(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""
        return await self.database.run(lambda db: _get(db, server_id))

    async def all(self) -> list[ServerRecord]:
        """Every server, oldest first."""

        def select(db: sqlite3.Connection) -> list[ServerRecord]:
            rows = db.execute(f"SELECT {COLUMNS} FROM servers ORDER BY created_at, rowid")
            return [_record(row) for row in rows]

        return await self.database.run(select)

    async def update(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config."""

        def update(db: sqlite3.Connection) -> ServerRecord | None:
            db.execute(
                "UPDATE servers SET config = ?, updated_at = ? WHERE id = ?",
                (orjson.dumps(config).decode(), now(), server_id),
            )
            return _get(db, server_id)

        return await self.database.run(update)

    async def delete(self, server_id: str) -> bool:
        """Delete a server."""

        def delete(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM servers WHERE id = ?", (server_id,)).rowcount > 0

        return await self.database.run(delete)


def _get(db: sqlite3.Connection, server_id: str) -> ServerRecord | None:
    row = db.execute(f"SELECT {COLUMNS} FROM servers WHERE id = ?", (server_id,)).fetchone()
    return None if row is None else _record(row)


def _record(row: sqlite3.Row) -> ServerRecord:
    return ServerRecord(
        id=row["id"],
        config=orjson.loads(row["config"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def now() -> str:
    """The current time, as stored (UTC, ISO 8601, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
