"""Wake-ups of job runners across machines: PostgreSQL's LISTEN/NOTIFY on one channel.

The PostgreSQL catalog itself sends the job's id on :data:`CHANNEL` in the transaction
that makes cells claimable (a new job, a retry, a claim given back, a dead owner's cells:
``proxy/catalog/postgres_jobs.py``). This module adds what the catalog cannot know: a
pause's end (a timer of the runner that paused the job) and a cancel (``cancel:<id>``,
so other processes stop that job's cells at once rather than within a poll). Every runner
LISTENs on a dedicated connection and claims at once instead of at its next idle poll. A
notification is only a hint: the claim in the catalog decides who runs what, and a lost
one (listener reconnecting, NOTIFY failed) costs at most ``job_idle_poll_seconds``. On the
SQLite catalog there is no other machine to wake, and these are no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
import sqlalchemy as sa

from proxy.catalog.base import Database
from proxy.catalog.postgres import PostgresDatabase
from proxy.catalog.postgres_jobs import CELLS_CHANNEL
from proxy.errors import CatalogUnavailable

log = logging.getLogger(__name__)

CHANNEL = CELLS_CHANNEL
WORK = "resumed"  # payload: there may be cells to claim (the catalog's: a job id)
CANCEL = "cancel:"  # payload prefix: the job named after it was cancelled (ids are hex)
KEEPALIVE_SECONDS = 5.0  # how often an idle listener checks its connection still answers
RECONNECT_SECONDS = (0.2, 10.0)  # first and longest wait between reconnection attempts


async def notify(database: Database, payload: str = WORK) -> None:
    """Send ``payload`` to every listening runner (a no-op on SQLite; failures are logged)."""
    if not isinstance(database, PostgresDatabase):
        return
    try:
        async with database.transaction() as db:
            await db.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
    except CatalogUnavailable as exc:  # the runners' idle poll finds the work anyway
        log.warning("job notification not sent: %s", exc.message)


class JobListener:
    """LISTENs on :data:`CHANNEL` on its own connection, reconnecting when it drops.

    ``on_work()`` runs on every work notification and after each (re)connection (a
    notification may have been missed meanwhile); ``on_cancel(job_id)`` on a cancel.
    """

    def __init__(
        self,
        url: str,
        on_work: Callable[[], None],
        on_cancel: Callable[[str], None],
        *,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.url = url
        self.on_work = on_work
        self.on_cancel = on_cancel
        self.keepalive = keepalive
        self.connections = 0  # successful connections so far (1 + reconnections)
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background."""
        self._task = asyncio.create_task(self._run(), name="job-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(CANCEL):
            self.on_cancel(payload[len(CANCEL) :])
        else:
            self.on_work()

    async def _run(self) -> None:
        wait = RECONNECT_SECONDS[0]
        while True:
            try:
                await self._listen_once()
                wait = RECONNECT_SECONDS[0]  # it was up: the next drop retries quickly
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("job listener: %s; reconnecting in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_SECONDS[1])

    async def _listen_once(self) -> None:
        """One connection: LISTEN until it drops (the server ended it, or a ping fails)."""
        conn = await asyncpg.connect(self.url, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            self.connections += 1
            self.listening.set()
            if self.connections > 1:
                log.info("job listener: reconnected")
            self.on_work()  # notifications sent while it was away are lost: look now
            while not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                if lost.is_set() or conn.is_closed():
                    break
                # A half-open TCP connection never reports its end: ask it something.
                await conn.fetchval("SELECT 1", timeout=self.keepalive)
            log.warning("job listener: the connection was closed")
        finally:
            self.listening.clear()
            conn.terminate()
