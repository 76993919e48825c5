"""Cells of jobs in the PostgreSQL catalog: claims, leases and results, fenced by ``attempt``.

The rules are ``sqlite_cells``'s. A claim locks one claimable cell with ``SELECT ... FOR
UPDATE SKIP LOCKED`` (claimers never wait on each other's cells), then re-checks its job
by updating the job's row: a job cancelled or paused since the cell was read returns no
row, and the claim moves on to another job. Every later write of a claim names its
``attempt`` and counts only while the cell is still ``running`` under it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.catalog.base import CellRecord, Claim
from proxy.catalog.postgres_jobs import NOT_ENDED, Clock, notify_claimable
from proxy.catalog.schema import cells, jobs
from proxy.catalog.sqlite_servers import now

if TYPE_CHECKING:
    from proxy.catalog.postgres import PostgresDatabase

MAX_SKIPPED_JOBS = 8  # jobs found ended or paused under one claim, before giving up


def _claimable(at: float) -> sa.ColumnElement[bool]:
    return sa.or_(
        cells.c.state == "pending", sa.and_(cells.c.state == "running", cells.c.lease_until < at)
    )


def _runnable(at: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        jobs.c.state.in_(NOT_ENDED),
        sa.or_(jobs.c.paused_until.is_(None), jobs.c.paused_until <= at),
    )


class PostgresCellStore:
    """:class:`~proxy.catalog.base.CellStore` on the ``cells`` table."""

    def __init__(self, database: PostgresDatabase, clock: Clock = time.time) -> None:
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
        skipped: list[str] = []
        async with self.database.transaction() as db:
            for _ in range(MAX_SKIPPED_JOBS):
                query = (
                    sa.select(cells.c.job_id, cells.c.idx, cells.c.spec)
                    .join(jobs, jobs.c.id == cells.c.job_id)
                    .where(_runnable(at), _claimable(at), jobs.c.id.not_in(skipped))
                    .order_by(jobs.c.created_at, jobs.c.id, cells.c.idx)
                    .limit(1)
                    .with_for_update(of=cells, skip_locked=True)
                )
                if job_id is not None:
                    query = query.where(cells.c.job_id == job_id)
                if kinds is not None:
                    query = query.where(jobs.c.kind.in_(list(kinds)))
                row = (await db.execute(query)).first()
                if row is None:
                    return None
                claim = await _take(db, row, owner, at, lease_seconds)
                if claim is not None:
                    return claim
                skipped.append(row.job_id)
        return None

    async def heartbeat(
        self, job_id: str, index: int, owner: str, attempt: int, lease_seconds: float
    ) -> bool:
        """Extend ``owner``'s own lease; ``False`` when the claim is not theirs any more."""
        query = (
            cells.update()
            .where(*_held(job_id, index, attempt), cells.c.owner == owner)
            .values(lease_until=self.clock() + lease_seconds)
        )
        return await self._changed(query)

    async def holds(self, job_id: str, index: int, owner: str, attempt: int) -> bool:
        """Whether ``owner``'s claim ``attempt`` still runs the cell (a read: polled often)."""
        query = sa.select(cells.c.idx).where(*_held(job_id, index, attempt), cells.c.owner == owner)
        async with self.database.transaction() as db:
            return (await db.execute(query)).first() is not None

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
        query = (
            cells.update()
            .where(*_held(job_id, index, attempt))
            .values(
                state="done",
                output=output,
                bytes=bytes_written,
                upstream_requests=cells.c.upstream_requests + upstream_requests,
                finished_at=now(),
                owner=None,
                lease_until=None,
                error=None,
            )
        )
        return await self._changed(query)

    async def fail(
        self, job_id: str, index: int, attempt: int, error: str, upstream_requests: int = 0
    ) -> bool:
        """Mark the cell failed with ``error``, if ``attempt`` is still its running claim."""
        query = (
            cells.update()
            .where(*_held(job_id, index, attempt))
            .values(
                state="failed",
                error=error,
                finished_at=now(),
                upstream_requests=cells.c.upstream_requests + upstream_requests,
                owner=None,
                lease_until=None,
            )
        )
        return await self._changed(query)

    async def release(self, job_id: str, index: int, attempt: int) -> bool:
        """Give the claim back: the cell is ``pending`` again (its attempt count stays)."""
        query = (
            cells.update()
            .where(*_held(job_id, index, attempt))
            .values(state="pending", owner=None, lease_until=None)
        )
        async with self.database.transaction() as db:
            released = bool((await db.execute(query)).rowcount)
            if released:
                await notify_claimable(db, job_id)
            return released

    async def of_job(self, job_id: str) -> list[CellRecord]:
        """The job's cells by index."""
        query = cells.select().where(cells.c.job_id == job_id).order_by(cells.c.idx)
        async with self.database.transaction() as db:
            return [_record(row) for row in await db.execute(query)]

    async def running_owners(self) -> list[str]:
        """The owners of running cells."""
        query = sa.select(cells.c.owner).where(cells.c.state == "running").distinct()
        async with self.database.transaction() as db:
            return [str(owner) for owner in (await db.execute(query)).scalars() if owner]

    async def release_owner(self, owner: str) -> int:
        """Every running cell of ``owner`` back to pending."""
        query = (
            cells.update()
            .where(cells.c.owner == owner, cells.c.state == "running")
            .values(state="pending", owner=None, lease_until=None)
            .returning(cells.c.job_id)
        )
        async with self.database.transaction() as db:
            job_ids = list((await db.execute(query)).scalars())
            for job_id in set(job_ids):
                await notify_claimable(db, job_id)
            return len(job_ids)

    async def _changed(self, query: sa.Update) -> bool:
        async with self.database.transaction() as db:
            return bool((await db.execute(query)).rowcount)


def _held(job_id: str, index: int, attempt: int) -> tuple[sa.ColumnElement[bool], ...]:
    """The cell still runs under the claim ``attempt`` (the fencing token)."""
    return (
        cells.c.job_id == job_id,
        cells.c.idx == index,
        cells.c.state == "running",
        cells.c.attempt == attempt,
    )


async def _take(
    db: AsyncConnection, row: Any, owner: str, at: float, lease_seconds: float
) -> Claim | None:
    """Claim the locked cell ``row`` if its job still runs (its row, re-read under a lock)."""
    stamp = now()
    # Claims resume a paused job whose pause is over.
    job = (
        await db.execute(
            jobs.update()
            .where(jobs.c.id == row.job_id, _runnable(at))
            .values(
                state="running",
                started_at=sa.func.coalesce(jobs.c.started_at, stamp),
                paused_until=None,
                paused_reason=None,
                paused_message=None,
                updated_at=stamp,
            )
            .returning(jobs.c.kind, jobs.c.params, jobs.c.server_id)
        )
    ).first()
    if job is None:
        return None
    attempt = (
        await db.execute(
            cells.update()
            .where(cells.c.job_id == row.job_id, cells.c.idx == row.idx)
            .values(
                state="running",
                owner=owner,
                lease_until=at + lease_seconds,
                attempt=cells.c.attempt + 1,
                error=None,
            )
            .returning(cells.c.attempt)
        )
    ).scalar_one()
    return Claim(
        job_id=row.job_id,
        kind=job.kind,
        params=orjson.loads(job.params),
        server_id=job.server_id,
        index=int(row.idx),
        attempt=int(attempt),
        spec=orjson.loads(row.spec),
    )


def _record(row: Any) -> CellRecord:
    return CellRecord(
        job_id=row.job_id,
        index=int(row.idx),
        spec=orjson.loads(row.spec),
        polygon=orjson.loads(row.polygon),
        state=row.state,
        owner=row.owner,
        lease_until=row.lease_until,
        attempt=int(row.attempt),
        error=row.error,
        output=row.output,
        bytes=int(row.bytes),
        upstream_requests=int(row.upstream_requests),
        finished_at=row.finished_at,
    )
