"""Jobs in the SQLite catalog: the job table and its operations (cells: ``sqlite_cells``).

Every write is one short ``BEGIN IMMEDIATE`` transaction: the write lock is taken before
anything is read, so ``serve --workers N`` processes and a CLI ``jobs run`` can share one
catalog file, and no two of them ever take the same claim or the same job's end.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from proxy.catalog.base import ENDED, CellCounts, JobRecord, NewCell, NewJob
from proxy.catalog.sqlite_servers import now
from proxy.catalog.sqlite_thread import immediate

if TYPE_CHECKING:
    from proxy.catalog.sqlite import SQLiteDatabase

T = TypeVar("T")
Clock = Callable[[], float]

# Named, never ``*``: a column added by a migration changes no query here.
JOB_COLUMNS = (
    "id, kind, name, server_id, image_id, params, state, paused_until, paused_reason, "
    "paused_message, outputs, error, created_at, updated_at, started_at, finished_at"
)
# The cells' counters of each job, summed in the same query as the job.
COUNTERS = """
    SUM(c.state = 'pending') AS n_pending, SUM(c.state = 'running') AS n_running,
    SUM(c.state = 'done') AS n_done, SUM(c.state = 'failed') AS n_failed,
    SUM(c.bytes) AS n_bytes, SUM(c.upstream_requests) AS n_requests"""
SELECT_JOBS = f"""
    SELECT {", ".join("j." + c.strip() for c in JOB_COLUMNS.split(","))}, {COUNTERS}
    FROM jobs j LEFT JOIN cells c ON c.job_id = j.id"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SQLiteJobStore:
    """:class:`~proxy.catalog.base.JobStore` on the ``jobs`` and ``cells`` tables.

    ``clock`` gives Unix seconds (leases, pauses); tests pass their own.
    """

    def __init__(self, database: SQLiteDatabase, clock: Clock = time.time) -> None:
        self.database = database
        self.clock = clock

    async def create(self, job: NewJob, cells: Sequence[NewCell]) -> JobRecord:
        """Store a new job and its cells in one transaction."""
        job_id = uuid.uuid4().hex[:12]
        stamp = now()

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO jobs (id, kind, name, server_id, image_id, params, state, outputs, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (
                    job_id,
                    job.kind,
                    job.name,
                    job.server_id,
                    job.image_id,
                    _json(job.params),
                    None if job.outputs is None else _json(job.outputs),
                    stamp,
                    stamp,
                ),
            )
            db.executemany(
                "INSERT INTO cells (job_id, idx, spec, polygon, state) "
                "VALUES (?, ?, ?, ?, 'pending')",
                ((job_id, c.index, _json(c.spec), _json(c.polygon)) for c in cells),
            )

        await self.database.run(lambda db: immediate(db, insert))
        record = await self.get(job_id)
        assert record is not None
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        """The job with its counters."""

        def select(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(f"{SELECT_JOBS} WHERE j.id = ? GROUP BY j.id", (job_id,)).fetchone()
            return None if row is None else _record(row)

        return await self.database.run(select)

    async def recent(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs newest first, optionally in one state."""
        where, args = ("WHERE j.state = ?", (state,)) if state else ("", ())

        def select(db: sqlite3.Connection) -> list[JobRecord]:
            rows = db.execute(
                f"{SELECT_JOBS} {where} GROUP BY j.id "
                "ORDER BY j.created_at DESC, j.rowid DESC LIMIT ?",
                (*args, limit),
            )
            return [_record(row) for row in rows]

        return await self.database.run(select)

    async def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not ended; the state it had."""

        def cancel(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] in ENDED:
                return None if row is None else str(row["state"])
            stamp = now()
            db.execute(
                "UPDATE cells SET state = 'pending', owner = NULL, lease_until = NULL "
                "WHERE job_id = ? AND state = 'running'",
                (job_id,),
            )
            db.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                "paused_until = NULL, paused_reason = NULL, paused_message = NULL WHERE id = ?",
                (stamp, stamp, job_id),
            )
            return str(row["state"])

        return await self.database.run(lambda db: immediate(db, cancel))

    async def retry(self, job_id: str) -> int | None:
        """Failed cells back to pending (a cancelled job resumes too); how many cells will run."""

        def retry(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            reset = db.execute(
                "UPDATE cells SET state = 'pending', error = NULL, owner = NULL, "
                "lease_until = NULL, finished_at = NULL WHERE job_id = ? AND state = 'failed'",
                (job_id,),
            ).rowcount
            if row["state"] == "cancelled":  # its unfinished cells run again too
                reset = db.execute(
                    "SELECT COUNT(*) FROM cells WHERE job_id = ? AND state = 'pending'",
                    (job_id,),
                ).fetchone()[0]
            if reset:
                db.execute(
                    "UPDATE jobs SET state = 'pending', finished_at = NULL, error = NULL, "
                    "finisher = NULL, finisher_until = NULL, updated_at = ? WHERE id = ?",
                    (now(), job_id),
                )
            return int(reset)

        return await self.database.run(lambda db: immediate(db, retry))

    async def pause(self, job_id: str, until: float, reason: str, message: str) -> None:
        """Hold the job's claims until ``until``."""

        def pause(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = 'paused', paused_until = ?, paused_reason = ?, "
                "paused_message = ?, updated_at = ? WHERE id = ? AND state IN "
                "('pending', 'running', 'paused')",
                (until, reason, message, now(), job_id),
            )

        await self.database.run(lambda db: immediate(db, pause))

    async def finishable(self) -> list[str]:
        """Jobs not ended with no pending or running cell left."""

        def select(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT j.id FROM jobs j WHERE j.state IN ('pending', 'running', 'paused') "
                "AND NOT EXISTS (SELECT 1 FROM cells c WHERE c.job_id = j.id "
                "AND c.state IN ('pending', 'running')) AND (j.finisher_until IS NULL "
                "OR j.finisher_until < ?) ORDER BY j.created_at",
                (self.clock(),),
            )
            return [str(row["id"]) for row in rows]

        return await self.database.run(select)

    async def begin_finish(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the job's end when every cell is finished and nobody else holds it."""
        at = self.clock()

        def take(db: sqlite3.Connection) -> bool:
            taken = db.execute(
                "UPDATE jobs SET finisher = ?, finisher_until = ? WHERE id = ? "
                "AND state IN ('pending', 'running', 'paused') "
                "AND (finisher_until IS NULL OR finisher_until < ?) "
                "AND NOT EXISTS (SELECT 1 FROM cells c WHERE c.job_id = jobs.id "
                "AND c.state IN ('pending', 'running'))",
                (owner, at + lease_seconds, job_id, at),
            ).rowcount
            return bool(taken)

        return await self.database.run(lambda db: immediate(db, take))

    async def end_finish(self, job_id: str, owner: str, error: str | None) -> str | None:
        """End the job: ``failed`` with a failed cell or an ``error``, else ``done``."""

        def end(db: sqlite3.Connection) -> str | None:
            failed = db.execute(
                "SELECT COUNT(*) FROM cells WHERE job_id = ? AND state = 'failed'", (job_id,)
            ).fetchone()[0]
            state = "failed" if failed or error else "done"
            stamp = now()
            ended = db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ?, updated_at = ?, "
                "finisher = NULL, finisher_until = NULL, paused_until = NULL, "
                "paused_reason = NULL, paused_message = NULL WHERE id = ? AND finisher = ? "
                "AND state IN ('pending', 'running', 'paused')",
                (state, error, stamp, stamp, job_id, owner),
            ).rowcount
            return state if ended else None

        return await self.database.run(lambda db: immediate(db, end))

    async def count_by_state(self) -> dict[str, int]:
        """Jobs per state."""

        def select(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            return {str(row["state"]): int(row["n"]) for row in rows}

        return await self.database.run(select)


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        server_id=row["server_id"],
        image_id=row["image_id"],
        params=orjson.loads(row["params"]),
        state=row["state"],
        paused_until=row["paused_until"],
        paused_reason=row["paused_reason"],
        paused_message=row["paused_message"],
        outputs=None if row["outputs"] is None else orjson.loads(row["outputs"]),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cells=CellCounts(
            pending=int(row["n_pending"] or 0),
            running=int(row["n_running"] or 0),
            done=int(row["n_done"] or 0),
            failed=int(row["n_failed"] or 0),
        ),
        bytes_written=int(row["n_bytes"] or 0),
        upstream_requests=int(row["n_requests"] or 0),
    )
