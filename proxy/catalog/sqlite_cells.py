"""Cells of jobs in the SQLite catalog: claims, leases and results, fenced by ``attempt``.

A claim takes a cell that is ``pending``, or ``running`` under a lease that expired (its
owner died), and adds one to ``attempt``. Every later write of that claim (heartbeat,
complete, fail, release) names its attempt and counts only while the cell is still
``running`` under it: a worker that lost its claim (lease expired and taken over, job
cancelled) can never overwrite the result of the claim that replaced it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from proxy.catalog.base import CellRecord, Claim
from proxy.catalog.sqlite_jobs import Clock
from proxy.catalog.sqlite_servers import now
from proxy.catalog.sqlite_thread import immediate

if TYPE_CHECKING:
    from proxy.catalog.sqlite import SQLiteDatabase

CELL_COLUMNS = (
    "job_id, idx, spec, polygon, state, owner, lease_until, attempt, error, output, bytes, "
    "upstream_requests, finished_at"
)
# Cells a claim may take: of a job that runs (not ended, not paused), pending or with an
# expired lease; oldest job first, then by index.
CLAIMABLE = """
    SELECT c.job_id, c.idx FROM cells c JOIN jobs j ON j.id = c.job_id
    WHERE j.state IN ('pending', 'running', 'paused')
      AND (j.paused_until IS NULL OR j.paused_until <= :now)
      AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_until < :now))"""


class SQLiteCellStore:
    """:class:`~proxy.catalog.base.CellStore` on the ``cells`` table."""

    def __init__(self, database: SQLiteDatabase, clock: Clock = time.time) -> None:
        self.database = database
        self.clock = clock

    async def claim(
        self,
        owner: str,
        lease_seconds: float,
        *,
        job_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> Claim | None:
        """Claim one cell for ``owner`` until now + ``lease_seconds``."""
        at = self.clock()
        query, args = CLAIMABLE, dict[str, Any](now=at)
        if job_id is not None:
            query += " AND c.job_id = :job"
            args["job"] = job_id
        if kinds is not None:
            names = {f"k{i}": k for i, k in enumerate(kinds)}
            query += f" AND j.kind IN ({', '.join(':' + n for n in names) or 'NULL'})"
            args.update(names)
        query += " ORDER BY j.created_at, j.rowid, c.idx LIMIT 1"

        def claim(db: sqlite3.Connection) -> Claim | None:
            row = db.execute(query, args).fetchone()
            if row is None:
                return None
            key = (row["job_id"], row["idx"])
            db.execute(
                "UPDATE cells SET state = 'running', owner = ?, lease_until = ?, "
                "attempt = attempt + 1, error = NULL WHERE job_id = ? AND idx = ?",
                (owner, at + lease_seconds, *key),
            )
            stamp = now()
            # Claims resume a paused job whose pause is over.
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), "
                "paused_until = NULL, paused_reason = NULL, paused_message = NULL, "
                "updated_at = ? WHERE id = ?",
                (stamp, stamp, key[0]),
            )
            cell = db.execute(
                "SELECT c.idx, c.attempt, c.spec, j.kind, j.params, j.server_id "
                "FROM cells c JOIN jobs j ON j.id = c.job_id WHERE c.job_id = ? AND c.idx = ?",
                key,
            ).fetchone()
            return Claim(
                job_id=key[0],
                kind=cell["kind"],
                params=orjson.loads(cell["params"]),
                server_id=cell["server_id"],
                index=int(cell["idx"]),
                attempt=int(cell["attempt"]),
                spec=orjson.loads(cell["spec"]),
            )

        return await self.database.run(lambda db: immediate(db, claim))

    async def heartbeat(
        self, job_id: str, index: int, owner: str, attempt: int, lease_seconds: float
    ) -> bool:
        """Extend ``owner``'s own lease; ``False`` when the claim is not theirs any more."""
        until = self.clock() + lease_seconds

        def beat(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    "UPDATE cells SET lease_until = ? WHERE job_id = ? AND idx = ? "
                    "AND state = 'running' AND owner = ? AND attempt = ?",
                    (until, job_id, index, owner, attempt),
                ).rowcount
            )

        return await self.database.run(lambda db: immediate(db, beat))

    async def holds(self, job_id: str, index: int, owner: str, attempt: int) -> bool:
        """Whether ``owner``'s claim ``attempt`` still runs the cell (a read: polled often)."""

        def select(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT 1 FROM cells WHERE job_id = ? AND idx = ? AND state = 'running' "
                "AND owner = ? AND attempt = ?",
                (job_id, index, owner, attempt),
            ).fetchone()
            return row is not None

        return await self.database.run(select)

    async def complete(
        self,
        job_id: str,
        index: int,
        attempt: int,
        *,
        output: str | None,
        bytes_written: int,
        upstream_requests: int,
    ) -> bool:
        """Mark the cell done, if ``attempt`` is still its running claim."""

        def done(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    "UPDATE cells SET state = 'done', output = ?, bytes = ?, "
                    "upstream_requests = upstream_requests + ?, finished_at = ?, owner = NULL, "
                    "lease_until = NULL, error = NULL "
                    "WHERE job_id = ? AND idx = ? AND state = 'running' AND attempt = ?",
                    (output, bytes_written, upstream_requests, now(), job_id, index, attempt),
                ).rowcount
            )

        return await self.database.run(lambda db: immediate(db, done))

    async def fail(
        self, job_id: str, index: int, attempt: int, error: str, upstream_requests: int = 0
    ) -> bool:
        """Mark the cell failed with ``error``, if ``attempt`` is still its running claim."""

        def failed(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    "UPDATE cells SET state = 'failed', error = ?, finished_at = ?, "
                    "upstream_requests = upstream_requests + ?, owner = NULL, lease_until = NULL "
                    "WHERE job_id = ? AND idx = ? AND state = 'running' AND attempt = ?",
                    (error, now(), upstream_requests, job_id, index, attempt),
                ).rowcount
            )

        return await self.database.run(lambda db: immediate(db, failed))

    async def release(self, job_id: str, index: int, attempt: int) -> bool:
        """Give the claim back: the cell is ``pending`` again (its attempt count stays)."""

        def release(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    "UPDATE cells SET state = 'pending', owner = NULL, lease_until = NULL "
                    "WHERE job_id = ? AND idx = ? AND state = 'running' AND attempt = ?",
                    (job_id, index, attempt),
                ).rowcount
            )

        return await self.database.run(lambda db: immediate(db, release))

    async def of_job(self, job_id: str) -> list[CellRecord]:
        """The job's cells by index."""

        def select(db: sqlite3.Connection) -> list[CellRecord]:
            rows = db.execute(
                f"SELECT {CELL_COLUMNS} FROM cells WHERE job_id = ? ORDER BY idx", (job_id,)
            )
            return [_record(row) for row in rows]

        return await self.database.run(select)

    async def running_owners(self) -> list[str]:
        """The owners of running cells."""

        def select(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT DISTINCT owner FROM cells WHERE state = 'running'")
            return [str(row["owner"]) for row in rows if row["owner"]]

        return await self.database.run(select)

    async def release_owner(self, owner: str) -> int:
        """Every running cell of ``owner`` back to pending."""

        def release(db: sqlite3.Connection) -> int:
            return int(
                db.execute(
                    "UPDATE cells SET state = 'pending', owner = NULL, lease_until = NULL "
                    "WHERE owner = ? AND state = 'running'",
                    (owner,),
                ).rowcount
            )

        return await self.database.run(lambda db: immediate(db, release))


def _record(row: sqlite3.Row) -> CellRecord:
    return CellRecord(
        job_id=row["job_id"],
        index=int(row["idx"]),
        spec=orjson.loads(row["spec"]),
        polygon=orjson.loads(row["polygon"]),
        state=row["state"],
        owner=row["owner"],
        lease_until=row["lease_until"],
        attempt=int(row["attempt"]),
        error=row["error"],
        output=row["output"],
        bytes=int(row["bytes"]),
        upstream_requests=int(row["upstream_requests"]),
        finished_at=row["finished_at"],
    )
