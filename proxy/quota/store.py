"""Quota counters in the catalog's SQLite file, shared by every process of one machine.

The store has its own connection and thread (admissions do not queue behind catalog
queries) with ``synchronous=NORMAL``: in WAL mode a commit is appended to the log
without an fsync, so an admission costs no disk flush. A process crash loses nothing
(the log is in the OS's page cache); a power loss or OS crash can lose the admissions
of the last moments before the log was synced (at checkpoints): the count can only
come back lower, never higher.

An admission is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the
usage is read, so two processes never both admit the last request of a quota (the
admission is the reservation). Bytes are added to the admitted request's slot after
its response.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import attrs

from proxy.catalog.sqlite_thread import SQLiteThread, immediate, switch_to_wal
from proxy.quota.periods import SlotUsage, Window

T = TypeVar("T")
NO_LIMIT = 2**62
BUSY_TIMEOUT_MS = 10_000  # the lock is held for microseconds; a long wait is a stuck peer


@attrs.frozen
class Limits:
    """What one admission may reach: requests and bytes, and the test connection reserve."""

    requests: int | None
    bytes: int | None
    reserve: int = 0  # requests admitted past a spent quota (test connection only)


@attrs.frozen
class Admission:
    """The outcome of one admission, with the window's totals after it."""

    admitted: bool
    requests: int  # used in the window, this request included when admitted
    bytes: int
    from_reserve: bool = False


class QuotaStore(Protocol):
    """Storage of quota counters: SQLite (here) or PostgreSQL (``store_postgres``)."""

    async def admit(self, server_id: str, window: Window, limits: Limits) -> Admission:
        """Count one request in ``window`` if ``limits`` allow it; atomic across processes."""

    async def add_bytes(self, server_id: str, window: Window, size: int) -> tuple[int, int]:
        """Add ``size`` bytes to ``window``'s current slot; the window's totals after it."""

    async def usage(self, server_id: str, window: Window) -> list[SlotUsage]:
        """The slots ``window`` sums, oldest first."""

    async def forget(self, server_id: str) -> None:
        """Drop a deleted server's counters."""

    async def close(self) -> None:
        """Release the store."""


class SQLiteQuotaStore(SQLiteThread):
    """Counters in ``quota_usage`` (catalog migration step 4), on a thread of their own."""

    what = "the quota counters"

    def __init__(self, path: Path) -> None:
        super().__init__("quota")
        self.path = path

    async def open(self) -> SQLiteQuotaStore:
        """Connect (the catalog, opened first, made the table)."""
        await self._call(self._connect)
        return self

    def _connect(self) -> None:
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        switch_to_wal(db, BUSY_TIMEOUT_MS / 1000)
        db.execute("PRAGMA synchronous=NORMAL")
        self._db = db

    async def admit(self, server_id: str, window: Window, limits: Limits) -> Admission:
        """Count one request in ``window`` if ``limits`` allow it; atomic across processes."""
        admit = partial(_admit, server_id=server_id, window=window, limits=limits)
        return await self.run(lambda db: immediate(db, admit))

    async def add_bytes(self, server_id: str, window: Window, size: int) -> tuple[int, int]:
        """Add ``size`` bytes to ``window``'s current slot; the window's totals after it."""

        def add(db: sqlite3.Connection) -> tuple[int, int]:
            db.execute(
                "UPDATE quota_usage SET bytes = bytes + ? "
                "WHERE server_id = ? AND kind = ? AND slot = ?",
                (size, server_id, window.kind, window.slot),
            )
            totals = _totals(db, server_id, window)
            return totals[0], totals[1]

        return await self.run(lambda db: immediate(db, add))

    async def usage(self, server_id: str, window: Window) -> list[SlotUsage]:
        """The slots ``window`` sums, oldest first (absent slots: nothing used)."""

        def read(db: sqlite3.Connection) -> list[SlotUsage]:
            rows = db.execute(
                "SELECT slot, requests, bytes FROM quota_usage "
                "WHERE server_id = ? AND kind = ? AND slot BETWEEN ? AND ? ORDER BY slot",
                (server_id, window.kind, window.first, window.slot),
            ).fetchall()
            return [SlotUsage(int(s), int(r), int(b)) for s, r, b in rows]

        return await self.run(read)

    async def forget(self, server_id: str) -> None:
        """Drop a deleted server's counters."""
        await self.run(
            lambda db: db.execute("DELETE FROM quota_usage WHERE server_id = ?", (server_id,))
        )


def _totals(db: sqlite3.Connection, server_id: str, window: Window) -> tuple[int, int, int, int]:
    """(requests, bytes, reserve used, newest slot or -1) summed over ``window``."""
    row = db.execute(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(bytes), 0), "
        "COALESCE(SUM(reserve_used), 0), COALESCE(MAX(slot), -1) FROM quota_usage "
        "WHERE server_id = ? AND kind = ? AND slot BETWEEN ? AND ?",
        (server_id, window.kind, window.first, window.slot),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _admit(db: sqlite3.Connection, server_id: str, window: Window, limits: Limits) -> Admission:
    requests, size, reserve_used, newest = _totals(db, server_id, window)
    max_requests = NO_LIMIT if limits.requests is None else limits.requests
    max_bytes = NO_LIMIT if limits.bytes is None else limits.bytes
    under = requests < max_requests and size < max_bytes
    from_reserve = not under and reserve_used < limits.reserve
    if not (under or from_reserve):
        return Admission(False, requests, size)
    db.execute(
        "INSERT INTO quota_usage (server_id, kind, slot, requests, bytes, reserve_used) "
        "VALUES (?, ?, ?, 1, 0, ?) ON CONFLICT (server_id, kind, slot) DO UPDATE SET "
        "requests = requests + 1, reserve_used = reserve_used + excluded.reserve_used",
        (server_id, window.kind, window.slot, int(from_reserve)),
    )
    if newest != window.slot and window.first != window.slot:
        # A new rolling bucket: drop the ones that left the window (bounded table).
        db.execute(
            "DELETE FROM quota_usage WHERE server_id = ? AND kind = ? AND slot < ?",
            (server_id, window.kind, window.first),
        )
    return Admission(True, requests + 1, size, from_reserve)
