"""Jobs in the PostgreSQL catalog: the same state machine as ``sqlite_jobs``, in Core.

Locks are always taken cells first, then their job (claims, cancel, retry, the job's end
alike), so two transactions never wait on each other in a circle. Under READ COMMITTED
each statement reads what was committed when it began: the job's end locks the job's
cells first, so a retry running at that moment has committed before the end checks that
no cell is left to run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.catalog.base import ENDED, CellCounts, JobRecord, NewCell, NewJob
from proxy.catalog.postgres_records import creation_stamp, dumps
from proxy.catalog.schema import cells, jobs
from proxy.catalog.sqlite_servers import now

if TYPE_CHECKING:
    from proxy.catalog.postgres import PostgresDatabase

Clock = Callable[[], float]
NOT_ENDED = ("pending", "running", "paused")
# Idle workers LISTEN here: a job's id is sent (at commit) whenever its cells become claimable
# by a new job, a retry, or a claim given back.
CELLS_CHANNEL = "imagery_proxy_cells"
NOTIFY = sa.text("SELECT pg_notify(:channel, :job)")


async def notify_claimable(db: AsyncConnection, job_id: str) -> None:
    """Tell idle workers the job has cells to claim (sent when the transaction commits)."""
    await db.execute(NOTIFY, {"channel": CELLS_CHANNEL, "job": job_id})


def _count(state: str) -> sa.ColumnElement[Any]:
    return sa.func.count(cells.c.job_id).filter(cells.c.state == state).label(f"n_{state}")


# A job and its cells' counters, summed in the same query (grouped by the primary key).
SELECT_JOBS = (
    sa.select(
        *(c for c in jobs.c if c.name not in ("finisher", "finisher_until")),
        _count("pending"),
        _count("running"),
        _count("done"),
        _count("failed"),
        sa.func.coalesce(sa.func.sum(cells.c.bytes), 0).label("n_bytes"),
        sa.func.coalesce(sa.func.sum(cells.c.upstream_requests), 0).label("n_requests"),
    )
    .select_from(jobs.outerjoin(cells, cells.c.job_id == jobs.c.id))
    .group_by(jobs.c.id)
)
UNFINISHED_CELL = sa.exists().where(
    cells.c.job_id == jobs.c.id, cells.c.state.in_(("pending", "running"))
)


class PostgresJobStore:
    """:class:`~proxy.catalog.base.JobStore` on the ``jobs`` and ``cells`` tables."""

    def __init__(self, database: PostgresDatabase, clock: Clock = time.time) -> None:
        self.database = database
        self.clock = clock

    async def create(self, job: NewJob, new_cells: Sequence[NewCell]) -> JobRecord:
        """Store a new job and its cells in one transaction."""
        job_id = uuid.uuid4().hex[:12]
        stamp = creation_stamp()
        async with self.database.transaction() as db:
            await db.execute(
                jobs.insert().values(
                    id=job_id,
                    kind=job.kind,
                    name=job.name,
                    server_id=job.server_id,
                    image_id=job.image_id,
                    params=dumps(job.params),
                    state="pending",
                    outputs=None if job.outputs is None else dumps(job.outputs),
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            if new_cells:
                rows = [
                    {
                        "job_id": job_id,
                        "idx": c.index,
                        "spec": dumps(c.spec),
                        "polygon": dumps(c.polygon),
                        "state": "pending",
                    }
                    for c in new_cells
                ]
                await db.execute(cells.insert(), rows)
                await notify_claimable(db, job_id)
        record = await self.get(job_id)
        assert record is not None
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        """The job with its counters."""
        async with self.database.transaction() as db:
            row = (await db.execute(SELECT_JOBS.where(jobs.c.id == job_id))).first()
        return None if row is None else _record(row)

    async def recent(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs newest first, optionally in one state."""
        query = SELECT_JOBS.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if state:
            query = query.where(jobs.c.state == state)
        async with self.database.transaction() as db:
            return [_record(row) for row in await db.execute(query)]

    async def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not ended; the state it had."""
        async with self.database.transaction() as db:
            await _lock_cells(db, job_id)
            state = await _lock_job(db, job_id)
            if state is None or state in ENDED:
                return state
            stamp = now()
            await db.execute(
                cells.update()
                .where(cells.c.job_id == job_id, cells.c.state == "running")
                .values(state="pending", owner=None, lease_until=None)
            )
            await db.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    state="cancelled",
                    finished_at=stamp,
                    updated_at=stamp,
                    paused_until=None,
                    paused_reason=None,
                    paused_message=None,
                )
            )
            return state

    async def retry(self, job_id: str) -> int | None:
        """Failed cells back to pending (a cancelled job resumes too); how many cells will run."""
        async with self.database.transaction() as db:
            await _lock_cells(db, job_id)
            state = await _lock_job(db, job_id)
            if state is None:
                return None
            reset = (
                await db.execute(
                    cells.update()
                    .where(cells.c.job_id == job_id, cells.c.state == "failed")
                    .values(
                        state="pending", error=None, owner=None, lease_until=None, finished_at=None
                    )
                )
            ).rowcount
            if state == "cancelled":  # its unfinished cells run again too
                reset = (
                    await db.execute(
                        sa.select(sa.func.count()).where(
                            cells.c.job_id == job_id, cells.c.state == "pending"
                        )
                    )
                ).scalar_one()
            if reset:
                await db.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(
                        state="pending",
                        finished_at=None,
                        error=None,
                        finisher=None,
                        finisher_until=None,
                        updated_at=now(),
                    )
                )
                await notify_claimable(db, job_id)
            return int(reset)

    async def pause(self, job_id: str, until: float, reason: str, message: str) -> None:
        """Hold the job's claims until ``until``."""
        async with self.database.transaction() as db:
            await db.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state.in_(NOT_ENDED))
                .values(
                    state="paused",
                    paused_until=until,
                    paused_reason=reason,
                    paused_message=message,
                    updated_at=now(),
                )
            )

    async def finishable(self) -> list[str]:
        """Jobs not ended with no pending or running cell left."""
        query = (
            sa.select(jobs.c.id)
            .where(
                jobs.c.state.in_(NOT_ENDED),
                ~UNFINISHED_CELL,
                sa.or_(jobs.c.finisher_until.is_(None), jobs.c.finisher_until < self.clock()),
            )
            .order_by(jobs.c.created_at, jobs.c.id)
        )
        async with self.database.transaction() as db:
            return [str(row.id) for row in await db.execute(query)]

    async def begin_finish(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the job's end when every cell is finished and nobody else holds it."""
        at = self.clock()
        # The row lock serializes two takers; the second re-reads finisher_until and stops.
        query = (
            jobs.update()
            .where(
                jobs.c.id == job_id,
                jobs.c.state.in_(NOT_ENDED),
                sa.or_(jobs.c.finisher_until.is_(None), jobs.c.finisher_until < at),
                ~UNFINISHED_CELL,
            )
            .values(finisher=owner, finisher_until=at + lease_seconds)
        )
        async with self.database.transaction() as db:
            # A retry holds these until it commits: the check below then reads its cells.
            await _lock_cells(db, job_id)
            return bool((await db.execute(query)).rowcount)

    async def end_finish(self, job_id: str, owner: str, error: str | None) -> str | None:
        """End the job: ``failed`` with a failed cell or an ``error``, else ``done``."""
        async with self.database.transaction() as db:
            await _lock_cells(db, job_id)  # no retry between the count and the end
            failed = (
                await db.execute(
                    sa.select(sa.func.count()).where(
                        cells.c.job_id == job_id, cells.c.state == "failed"
                    )
                )
            ).scalar_one()
            state = "failed" if failed or error else "done"
            stamp = now()
            ended = await db.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.finisher == owner, jobs.c.state.in_(NOT_ENDED))
                .values(
                    state=state,
                    error=error,
                    finished_at=stamp,
                    updated_at=stamp,
                    finisher=None,
                    finisher_until=None,
                    paused_until=None,
                    paused_reason=None,
                    paused_message=None,
                )
            )
            return state if ended.rowcount else None

    async def count_by_state(self) -> dict[str, int]:
        """Jobs per state."""
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        async with self.database.transaction() as db:
            return {str(state): int(n) for state, n in await db.execute(query)}


async def _lock_cells(db: AsyncConnection, job_id: str) -> None:
    """Lock the job's cells (before its row: the order every claim takes them in)."""
    await db.execute(sa.select(cells.c.idx).where(cells.c.job_id == job_id).with_for_update())


async def _lock_job(db: AsyncConnection, job_id: str) -> str | None:
    """Lock the job's row; its state (``None``: no job)."""
    query = sa.select(jobs.c.state).where(jobs.c.id == job_id).with_for_update()
    state = (await db.execute(query)).scalar_one_or_none()
    return None if state is None else str(state)


def _record(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        name=row.name,
        server_id=row.server_id,
        image_id=row.image_id,
        params=orjson.loads(row.params),
        state=row.state,
        paused_until=row.paused_until,
        paused_reason=row.paused_reason,
        paused_message=row.paused_message,
        outputs=None if row.outputs is None else orjson.loads(row.outputs),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cells=CellCounts(
            pending=int(row.n_pending),
            running=int(row.n_running),
            done=int(row.n_done),
            failed=int(row.n_failed),
        ),
        bytes_written=int(row.n_bytes),
        upstream_requests=int(row.n_requests),
    )
