"""The embedded SQLite catalog.

sqlite3 blocks, so every statement runs on one dedicated worker thread: statements are
serialized (SQLite allows one writer anyway) and the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from proxy.catalog.base import Catalog
from proxy.catalog.migrations import migrate
from proxy.catalog.sqlite_servers import SQLiteServerStore

T = TypeVar("T")


async def open_catalog(path: Path) -> Catalog:
    """Open (creating or migrating) the SQLite catalog at ``path``."""
    database = await SQLiteDatabase(path).open()
    return Catalog(database=database, servers=SQLiteServerStore(database))


class SQLiteDatabase:
    """One SQLite file (WAL mode, so readers never block the writer) and its worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> SQLiteDatabase:
        """Create the file if needed and bring its schema to the latest version."""
        await self._call(self._connect)
        return self

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def _call(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, func)

    async def run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``func(connection)`` on the worker thread."""

        def call() -> T:
            if self._db is None:
                raise RuntimeError("the catalog is not open")
            return func(self._db)

        return await self._call(call)

    async def ping(self) -> None:
        """Run a trivial query."""
        await self.run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection and the worker thread."""

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(close)
        self._worker.shutdown(wait=True)
