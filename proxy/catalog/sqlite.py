"""The embedded SQLite catalog.

sqlite3 blocks, so every statement runs on one dedicated worker thread: statements are
serialized (SQLite allows one writer anyway) and the event loop never waits on disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TypeVar

import sqlalchemy.exc

from proxy.catalog.base import Catalog
from proxy.catalog.sqlite_cells import SQLiteCellStore
from proxy.catalog.sqlite_images import SQLiteImageStore
from proxy.catalog.sqlite_jobs import SQLiteJobStore
from proxy.catalog.sqlite_servers import SQLiteServerStore
from proxy.catalog.sqlite_thread import SQLiteThread, reason, switch_to_wal
from proxy.catalog.upgrade import upgrade_sqlite
from proxy.errors import StartupError

T = TypeVar("T")


async def open_catalog(path: Path) -> Catalog:
    """Open (creating or migrating) the SQLite catalog at ``path``."""
    database = await SQLiteDatabase(path).open()
    return Catalog(
        database=database,
        servers=SQLiteServerStore(database),
        images=SQLiteImageStore(database),
        jobs=SQLiteJobStore(database),
        cells=SQLiteCellStore(database),
    )


STARTUP_LOCK_WAIT = 60.0  # seconds a start waits for another process's write lock


class SQLiteDatabase(SQLiteThread):
    """One SQLite file (WAL mode, so readers never block the writer) and its worker thread."""

    backend = "sqlite"
    what = "the catalog"

    def __init__(self, path: Path) -> None:
        super().__init__("catalog")
        self.path = path

    async def open(self) -> SQLiteDatabase:
        """Create the file if needed, bring its schema to the latest version, check writes.

        A file that is not a SQLite catalog, or cannot be written, stops the start-up with
        :class:`~proxy.errors.StartupError`; the file is left exactly as it was.
        """
        try:
            await self._call(self._connect)
        except BaseException as exc:
            self._worker.shutdown(wait=False)
            cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc  # Alembic
            if isinstance(cause, sqlite3.Error | OSError):
                why = reason(cause)
                raise StartupError(f"the catalog {self.path} cannot be used: {why}") from None
            raise
        return self

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Processes starting together wait for each other's migration (and WAL switch):
        # a loaded machine took more than sqlite3's default 5 s.
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=STARTUP_LOCK_WAIT
        )
        try:
            db.row_factory = sqlite3.Row
            switch_to_wal(db, STARTUP_LOCK_WAIT)
            db.execute("PRAGMA foreign_keys=ON")
            upgrade_sqlite(self.path)  # Alembic, on a connection of its own
            check_writable(db)
            db.execute("PRAGMA busy_timeout = 5000")  # past start-up: sqlite3's default 5 s
        except BaseException:
            db.close()
            raise
        self._db = db

    async def ping(self) -> None:
        """Check the catalog answers and takes writes (readiness)."""
        await self.run(check_writable)


def check_writable(db: sqlite3.Connection) -> None:
    """Raise unless ``db`` takes a write: take the write lock, write the header, roll back.

    Reading alone passes on a read-only file, so readiness must try a write; rolled back,
    it changes nothing.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"PRAGMA user_version = {version}")
    finally:
        db.execute("ROLLBACK")
