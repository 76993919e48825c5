"""The job runner: claims cells from the catalog and runs them with their kind.

``slots`` tasks each loop: claim a cell (any job, or one job for ``jobs run``), run it
under its server's metrics scope and as job traffic (held to the servers' job share),
renew the claim's lease while it runs, and write its outcome fenced by the claim's
attempt. A cell whose claim is lost (job cancelled, lease taken over) is cancelled
within ``poll`` seconds and its outcome is dropped. When a job's last cell ends, one
runner (whichever takes the job's end in the catalog) calls ``kind.finish`` and ends the
job. A process killed mid-cell leaves leases that expire: another runner, or this one
started again, claims those cells anew, so jobs resume after any stop.

An idle slot sleeps until ``wake()`` (a job created or retried here, a pause's end, or a
NOTIFY from another process, proxy/jobs/notify.py) or ``idle_poll``, at most half a lease
while other runners hold cells (an expired lease sends no notification).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from proxy.catalog.base import Claim
from proxy.errors import CatalogUnavailable
from proxy.jobs.kinds import CellDone, CellFailed, CellWork, JobKind
from proxy.metrics import REQUEST_COUNTER, server_scope
from proxy.net.limits import job_traffic
from streaming.errors import CodedError, SourceQuotaExceeded

if TYPE_CHECKING:
    from proxy.services import Services

log = logging.getLogger(__name__)


def make_owner() -> str:
    """This runner's name in the catalog's claims: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_error(exc: BaseException) -> str:
    """The message a failed cell keeps (no stack trace ever reaches the API)."""
    if isinstance(exc, CellFailed):
        return str(exc) or "the cell failed"
    if isinstance(exc, CodedError):
        return f"{exc.code}: {exc.message}"
    return f"internal error ({type(exc).__name__}): {exc}"[:2000]


class JobRunner:
    """Runs cells of jobs whose kind it knows, ``slots`` at a time."""

    def __init__(
        self,
        services: Services,
        kinds: Mapping[str, JobKind],
        *,
        slots: int,
        lease: float,
        heartbeat: float,
        poll: float = 1.0,
        idle_poll: float | None = None,
        job_id: str | None = None,
        owner: str | None = None,
    ) -> None:
        self.services = services
        self.kinds = dict(kinds)
        self.slots = slots
        self.lease = lease
        self.heartbeat = min(heartbeat, lease / 2)
        self.poll = poll
        # An idle slot looks for work this often, unless woken (wake(): a job was created,
        # retried or resumed, here or, through LISTEN/NOTIFY, on another machine).
        self.idle_poll = poll if idle_poll is None else idle_poll
        # Called when a job this runner paused may run again (Jobs: wake every runner).
        self.on_resume: Callable[[], None] = self.wake
        self.job_id = job_id  # only this job's cells (``jobs run``)
        self.owner = owner or make_owner()
        self.live: dict[str, int] = {}  # job id -> bytes its running cells wrote so far
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._cells: dict[tuple[str, int], asyncio.Task[CellDone]] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    def start(self) -> None:
        """Start the slots (the first one reclaims the cells of dead runners of this host)."""
        for n in range(self.slots):
            self._tasks.append(asyncio.create_task(self._slot(n == 0), name=f"job-slot-{n}"))

    async def stop(self) -> None:
        """Stop the slots: running cells are cancelled and given back (pending)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def wake(self) -> None:
        """A job was created or retried: claim now instead of at the next poll."""
        self._wake.set()

    def cancel_local(self, job_id: str) -> None:
        """Cancel this process's running cells of ``job_id`` now (its claims are void)."""
        for (job, _), task in list(self._cells.items()):
            if job == job_id:
                task.cancel()

    async def _slot(self, first: bool) -> None:
        kinds = list(self.kinds)
        if first:
            with contextlib.suppress(CatalogUnavailable):
                await self.reclaim_dead()
        while True:
            self._wake.clear()
            wait = self.idle_poll
            try:
                claim = await self._claim(kinds)
                if claim is not None:
                    await self._run(claim)
                    await self._finish(claim.job_id, claim.kind)
                    continue
                await self._finish_ready()
                wait = await self._idle_wait()
            except CatalogUnavailable as exc:
                log.warning("job runner: %s", exc.message)
            except Exception:  # a bug must not stop the slot: log it, go on after a poll
                log.exception("job runner: unexpected error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _claim(self, kinds: list[str]) -> Claim | None:
        """Claim a cell; a stop that comes while the claim is on its way gives it back.

        The claim may be committed when the stop cancels us: left alone, the cell would
        stay leased by a runner that is gone until its lease expires.
        """
        cells = self.services.catalog.cells
        claiming = asyncio.ensure_future(
            cells.claim(self.owner, self.lease, job_id=self.job_id, kinds=kinds)
        )
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                claim = await claiming
                if claim is not None:
                    await cells.release(claim.job_id, claim.index, claim.attempt)
            raise

    async def _idle_wait(self) -> float:
        """How long an idle slot sleeps unless woken: the idle poll, but at most half a
        lease while other runners hold cells (no notification says a lease expired: a
        stopped or dead runner's cell is claimed again within that after its lease)."""
        if self.idle_poll <= self.lease / 2:
            return self.idle_poll
        owners = await self.services.catalog.cells.running_owners()
        return self.lease / 2 if any(o != self.owner for o in owners) else self.idle_poll

    async def reclaim_dead(self) -> int:
        """Give back the cells of runners of this host whose process is gone (SIGKILL...).

        Their leases would expire anyway; this resumes them at once after a restart.
        """
        host, pid = self.owner.split(":")[:2]
        released = 0
        for owner in await self.services.catalog.cells.running_owners():
            parts = owner.split(":")
            if len(parts) == 3 and parts[0] == host and parts[1] != pid and parts[1].isdigit():
                if not process_alive(int(parts[1])):
                    released += await self.services.catalog.cells.release_owner(owner)
        if released:
            log.info("job runner: %d cells of dead runners of this host given back", released)
        return released

    async def _run(self, claim: Claim) -> None:
        kind = self.kinds[claim.kind]
        work = CellWork(
            job_id=claim.job_id,
            kind=claim.kind,
            params=claim.params,
            server_id=claim.server_id,
            index=claim.index,
            attempt=claim.attempt,
            spec=claim.spec,
        )
        requests, written = [0], [0]

        def progress(n: int) -> None:
            written[0] += n
            self.live[claim.job_id] = self.live.get(claim.job_id, 0) + n

        async def run() -> CellDone:
            REQUEST_COUNTER.set(requests)  # this task's own context: its requests only
            with server_scope(claim.server_id), job_traffic():
                return await kind.run_cell(self.services, work, progress)

        task = asyncio.create_task(run(), name=f"cell-{claim.job_id}-{claim.index}")
        key = (claim.job_id, claim.index)
        self._cells[key] = task
        try:
            held = await self._watch(claim, task)
        except asyncio.CancelledError:  # the runner stops: give the cell back
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.services.catalog.cells.release(claim.job_id, claim.index, claim.attempt)
            raise
        finally:
            self._cells.pop(key, None)
            self.live[claim.job_id] = self.live.get(claim.job_id, 0) - written[0]
            if not self.live[claim.job_id]:
                del self.live[claim.job_id]
        if held:
            await self._record(claim, task, requests[0])

    async def _watch(self, claim: Claim, task: asyncio.Task[CellDone]) -> bool:
        """Wait for the cell, renewing its lease; cancel it once the claim is lost.

        True when the task ended while the claim was still held (its outcome counts).
        """
        cells = self.services.catalog.cells
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        args = (claim.job_id, claim.index, self.owner, claim.attempt)
        while True:
            await asyncio.wait({task}, timeout=self.poll)
            if task.done() and not task.cancelled():
                return True
            try:
                if loop.time() >= next_beat:
                    held = await cells.heartbeat(*args, self.lease)
                    next_beat = loop.time() + self.heartbeat
                else:
                    held = await cells.holds(*args)
            except CatalogUnavailable:
                held = True  # keep working; the lease tells others if this lasts
            if task.done():  # meanwhile: its outcome (the catalog fences a stale one)
                return not task.cancelled()  # cancelled: by cancel_local, the job was
            if not held:
                log.info("job %s cell %d: claim lost, cancelling", claim.job_id, claim.index)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return False

    async def _record(self, claim: Claim, task: asyncio.Task[CellDone], requests: int) -> None:
        cells, jobs = self.services.catalog.cells, self.services.catalog.jobs
        metrics = self.services.metrics.jobs
        where = (claim.job_id, claim.index, claim.attempt)
        exc = task.exception()
        if exc is None:
            done = task.result()
            if await cells.complete(
                *where,
                output=done.output,
                bytes_written=done.bytes_written,
                upstream_requests=done.upstream_requests or requests,
            ):
                metrics.cell(claim.kind, "done", done.bytes_written)
            else:
                log.info("job %s cell %d: attempt %d's completion rejected (its claim moved on)",
                         claim.job_id, claim.index, claim.attempt)  # fmt: skip
        elif isinstance(exc, SourceQuotaExceeded):
            log.info("job %s paused until %s: %s", claim.job_id, exc.resets_at, exc.message)
            await cells.release(*where)
            await jobs.pause(claim.job_id, exc.resets_at, "quota", exc.message)
            self._resume_at(exc.resets_at)
        elif isinstance(exc, CatalogUnavailable) or isinstance(exc.__cause__, CatalogUnavailable):
            # The catalog dropped (a PostgreSQL restart): not the cell's fault. Give it back
            # for a later claim; if the release fails too, its lease expires instead.
            log.warning("job %s cell %d given back: %s", claim.job_id, claim.index, exc)
            if not await cells.release(*where):  # e.g. stopped past its lease, its session cut
                log.info("job %s cell %d: attempt %d's release dropped (its claim moved on)",
                         claim.job_id, claim.index, claim.attempt)  # fmt: skip
        else:
            if not isinstance(exc, CellFailed | CodedError):
                log.error("job %s cell %d failed", claim.job_id, claim.index, exc_info=exc)
            if await cells.fail(*where, cell_error(exc), requests):
                metrics.cell(claim.kind, "failed")
            else:
                log.info("job %s cell %d: attempt %d's failure dropped (its claim moved on)",
                         claim.job_id, claim.index, claim.attempt)  # fmt: skip

    def _resume_at(self, when: float) -> None:
        """Call ``on_resume`` when a pause ends (the idle poll is only the fallback)."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time()) + 0.05  # just past the end: the claim sees it over

        def fire() -> None:
            self._timers.discard(timer)
            self.on_resume()

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    async def _finish_ready(self) -> None:
        """End jobs whose cells all ended but whose end did not run (e.g. its runner died)."""
        jobs = self.services.catalog.jobs
        for job_id in await jobs.finishable():
            job = await jobs.get(job_id)
            if job is not None and (self.job_id is None or job_id == self.job_id):
                await self._finish(job_id, job.kind)

    async def _finish(self, job_id: str, kind: str) -> None:
        """Run the job's end once, if every cell ended: ``kind.finish``, then done/failed."""
        jobs = self.services.catalog.jobs
        if kind not in self.kinds or not await jobs.begin_finish(job_id, self.owner, self.lease):
            return
        job = await jobs.get(job_id)
        error = None
        try:
            await self.kinds[kind].finish(self.services, job_id, job.params if job else {})
        except Exception as exc:
            log.error("job %s: its end failed", job_id, exc_info=exc)
            error = cell_error(exc)
        state = await jobs.end_finish(job_id, self.owner, error)
        log.info("job %s ended %s", job_id, state)
