"""Jobs of one process: creation (planned by their kind), cancel, retry, and the runner.

The HTTP handlers and the CLI both go through :class:`Jobs`, so a job made from the shell
and one made over HTTP are the same rows, run by whichever runner claims them first. On
the PostgreSQL catalog, new claimable cells (the catalog's own NOTIFY), a pause's end and
a cancel reach the runners of other processes and machines (:mod:`proxy.jobs.notify`),
and this process's runner listens for theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxy.catalog.base import ENDED, JobRecord, NewCell, NewJob
from proxy.jobs.errors import JobFinished, JobNotFound, JobNotRetryable, UnknownJobKind
from proxy.jobs.kinds import JobKind
from proxy.jobs.notify import CANCEL, JobListener, notify
from proxy.jobs.runner import JobRunner
from proxy.jobs.views import job_view

if TYPE_CHECKING:
    from proxy.services import Services


class Jobs:
    """Creates, cancels and retries jobs; ``runner`` (if any) runs them in this process."""

    def __init__(self, services: Services, kinds: Mapping[str, JobKind]) -> None:
        self.services = services
        self.kinds = dict(kinds)
        self.runner: JobRunner | None = None
        self.listener: JobListener | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        """Whether other processes may run these jobs' cells (a PostgreSQL catalog)."""
        return bool(self.services.settings.catalog_url)

    def make_runner(self, *, slots: int | None = None, job_id: str | None = None) -> JobRunner:
        """A runner of this process's kinds, with the settings' slots, lease and heartbeat."""
        settings = self.services.settings
        runner = JobRunner(
            self.services,
            self.kinds,
            slots=settings.serve_job_slots if slots is None else slots,
            lease=settings.job_lease_seconds,
            heartbeat=settings.job_heartbeat_seconds,
            poll=settings.job_poll_seconds,
            # Woken by NOTIFY on a shared catalog: the idle poll is only the fallback.
            idle_poll=settings.job_idle_poll_seconds if self.shared else None,
            job_id=job_id,
        )
        runner.on_resume = self.wake  # a pause ended: every runner may claim its cells
        return runner

    def start(self, slots: int | None = None) -> None:
        """Run jobs in this process: ``slots`` cells at once (default: ``serve``'s rule,
        ``Settings.serve_job_slots``); none when that is 0."""
        slots = self.services.settings.serve_job_slots if slots is None else slots
        if slots <= 0:
            return
        self.runner = self.make_runner(slots=slots)
        if self.shared:
            runner = self.runner
            self.listener = JobListener(
                self.services.settings.catalog_url, runner.wake, runner.cancel_local
            )
            self.listener.start()
        self.runner.start()

    async def stop(self) -> None:
        """Stop the runner; running cells go back to pending for the next start."""
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def create(
        self,
        kind: str,
        *,
        name: str,
        server_id: str,
        image_id: str | None,
        params: dict[str, Any],
        outputs: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Plan a job with its kind (which validates ``params``) and store it, pending."""
        job_kind = self.kinds.get(kind)
        if job_kind is None:
            raise UnknownJobKind(f"this service does not run jobs of kind {kind!r}")
        planned = await job_kind.plan(self.services, params)
        cells = [NewCell(index=c.index, spec=c.spec, polygon=c.polygon) for c in planned]
        job = NewJob(
            kind=kind,
            name=name,
            server_id=server_id,
            image_id=image_id,
            params=params,
            outputs=outputs,
        )
        record = await self.services.catalog.jobs.create(job, cells)
        self._wake_local()  # other processes: the catalog's NOTIFY at its commit
        return record

    async def get(self, job_id: str) -> JobRecord:
        """The job, else :class:`JobNotFound` (404)."""
        record = await self.services.catalog.jobs.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id[:64]!r}", hint="GET /jobs lists the jobs")
        return record

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job; its running cells stop within seconds. 409 once it ended done/failed."""
        before = await self.services.catalog.jobs.cancel(job_id)
        if before is None:
            raise JobNotFound(f"no job with id {job_id[:64]!r}", hint="GET /jobs lists the jobs")
        if before in ("done", "failed"):
            raise JobFinished(
                f"job {job_id} already ended {before}",
                hint="retry it (POST /jobs/{id}/retry) if it has failed cells",
                state=before,
            )
        if self.runner is not None:
            self.runner.cancel_local(job_id)
        # Other processes' cells of the job stop now (else within job_poll_seconds).
        await notify(self.services.catalog.database, CANCEL + job_id)
        return await self.get(job_id)

    async def retry(self, job_id: str) -> JobRecord:
        """Failed cells (and a cancelled job's unfinished ones) run again; 409 when none."""
        again = await self.services.catalog.jobs.retry(job_id)
        if again is None:
            raise JobNotFound(f"no job with id {job_id[:64]!r}", hint="GET /jobs lists the jobs")
        if not again:
            record = await self.get(job_id)
            raise JobNotRetryable(
                f"job {job_id} has no failed cell to retry (it is {record.state})",
                hint="only failed cells, or a cancelled job's unfinished cells, run again",
                state=record.state,
            )
        self._wake_local()  # other processes: the catalog's NOTIFY at its commit
        return await self.get(job_id)

    def wake(self) -> None:
        """Tell this process's runner there is work, and (NOTIFY) every other one."""
        self._wake_local()
        if self.shared:
            task = asyncio.create_task(notify(self.services.catalog.database))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _wake_local(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    def view(self, record: JobRecord) -> dict[str, Any]:
        """The job's JSON, with the bytes this process's running cells wrote so far."""
        live = 0 if self.runner is None else self.runner.live.get(record.id, 0)
        return job_view(record, live)


def ended(record: JobRecord) -> bool:
    """Whether the job ended (done, failed or cancelled)."""
    return record.state in ENDED
