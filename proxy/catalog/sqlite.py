"""The embedded SQLite catalog.

sqlite3 blocks, so every statement runs on one dedicated worker thread: statements are
serialized (SQLite allows one writer anyway) and the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from proxy.catalog.base import ServerRecord

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class SQLiteCatalog:
    """Catalog in one SQLite file (WAL mode, so readers never block the writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> SQLiteCatalog:
        """Create the file and schema if needed."""
        await self._run(self._connect)
        return self

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        self._db = db

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, func, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the catalog is not open")
        return self._db

    async def create_server(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server under a new id."""
        now = _now()
        record = ServerRecord(uuid.uuid4().hex[:12], config, now, now)

        def insert() -> None:
            self._conn().execute(
                "INSERT INTO servers (id, config, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (record.id, orjson.dumps(config).decode(), now, now),
            )

        await self._run(insert)
        return record

    async def get_server(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""

        def select() -> ServerRecord | None:
            row = (
                self._conn().execute("SELECT * FROM servers WHERE id = ?", (server_id,)).fetchone()
            )
            return None if row is None else _server(row)

        return await self._run(select)

    async def list_servers(self) -> list[ServerRecord]:
        """Every server, oldest first."""

        def select() -> list[ServerRecord]:
            rows = self._conn().execute("SELECT * FROM servers ORDER BY created_at, id")
            return [_server(row) for row in rows]

        return await self._run(select)

    async def update_server(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config."""

        def update() -> None:
            self._conn().execute(
                "UPDATE servers SET config = ?, updated_at = ? WHERE id = ?",
                (orjson.dumps(config).decode(), _now(), server_id),
            )

        await self._run(update)
        return await self.get_server(server_id)

    async def delete_server(self, server_id: str) -> bool:
        """Delete a server."""

        def delete() -> bool:
            cur = self._conn().execute("DELETE FROM servers WHERE id = ?", (server_id,))
            return cur.rowcount > 0

        return await self._run(delete)

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._run(lambda: self._conn().execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection and the worker thread."""

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._worker.shutdown(wait=True)


def _server(row: tuple[Any, ...]) -> ServerRecord:
    server_id, config, created, updated = row
    return ServerRecord(server_id, orjson.loads(config), created, updated)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
