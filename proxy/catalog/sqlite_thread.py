"""One SQLite connection on a thread of its own: the catalog's, and the quota counters'.

``sqlite3`` blocks, so every call goes to the connection's own thread (one writer per
connection, in order). A failing statement rolls back what it began and comes out as
:class:`~proxy.errors.CatalogUnavailable` with a reason a person can act on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from proxy.errors import CatalogUnavailable

T = TypeVar("T")


class SQLiteThread:
    """A connection (made by the subclass's ``open``) and the one thread that uses it."""

    what = "the database"  # how errors name it

    def __init__(self, thread_name: str) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None

    async def _call(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, func)

    async def run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``func(connection)`` on the thread; a failure rolls its transaction back."""

        def call() -> T:
            if self._db is None:
                raise CatalogUnavailable(f"{self.what} is not open")
            try:
                return func(self._db)
            except sqlite3.IntegrityError:
                raise  # a bug of the caller, not the state of the file
            except sqlite3.Error as exc:  # read-only, full disk, locked, damaged
                if self._db.in_transaction:
                    self._db.rollback()
                raise CatalogUnavailable(f"{self.what} cannot be used: {reason(exc)}") from None

        return await self._call(call)

    async def close(self) -> None:
        """Close the connection and the thread."""

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(close)
        self._worker.shutdown(wait=True)


def immediate(db: sqlite3.Connection, func: Callable[[sqlite3.Connection], T]) -> T:
    """``func(db)`` in one ``BEGIN IMMEDIATE`` transaction: all of it, or nothing.

    The write lock is taken before anything is read, so no other process writes between
    this transaction's reads and its writes.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        result = func(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def reason(exc: BaseException) -> str:
    """What an SQLite error means for the file, in words."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"{text} (the file, its directory or its disk is read-only)"
    if "not a database" in text or "malformed" in text:
        return f"{text} (the file is damaged or not a catalog; it was left untouched)"
    return text


def switch_to_wal(db: sqlite3.Connection, wait: float) -> None:
    """Put the file in WAL mode, retrying for ``wait`` s while another connection holds it.

    SQLite answers "database is locked" at once here, without its busy wait, while another
    process switches or reads a new file (3 opens at once failed 8 times in 180).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
