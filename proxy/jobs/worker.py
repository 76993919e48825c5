"""``imagery-proxy worker``: a process that only runs job cells, on any machine.

It opens the same services as ``serve`` (catalog, upstream client, caches, quotas) but no
HTTP server, and runs the same :class:`~proxy.jobs.runner.JobRunner` as ``serve``'s
in-process runner: the claims, leases, heartbeats and attempt fencing are the catalog's,
so any number of workers (and ``serve`` replicas told to run jobs) share the cells of
every job. An idle worker sleeps until a NOTIFY (a job created, retried, resumed or
cancelled anywhere) or its slow idle poll. SIGTERM or SIGINT stops it cleanly: running
cells are cancelled and given back (pending) for the next claim; a worker killed
outright leaves leases that expire after ``job_lease_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from proxy.config import Settings
from proxy.jobs.kinds import JobKind
from proxy.jobs.registry import default_kinds
from proxy.jobs.service import Jobs
from proxy.services import open_services

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_worker(
    settings: Settings, slots: int, kinds: Mapping[str, JobKind] | None = None
) -> int:
    """Run job cells, ``slots`` at a time, until SIGTERM or SIGINT; the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_services(settings) as services:
            jobs = Jobs(services, default_kinds() if kinds is None else kinds)
            jobs.start(slots)
            runner = jobs.runner
            assert runner is not None  # slots >= 1
            log.info(
                "worker %s: %d cells at once, jobs from the %s catalog",
                runner.owner, slots, services.catalog.database.backend,
            )  # fmt: skip
            try:
                await stop.wait()
                log.info("worker %s: stopping, giving running cells back", runner.owner)
            finally:
                await jobs.stop()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0
