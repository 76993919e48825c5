"""Helpers of the job-worker tests: a serving replica in the test process (jobs = postgres,
so it runs no cell), ``imagery-proxy worker`` subprocesses on a fresh PostgreSQL database,
each with its own data folder (another machine) and the outputs folder shared, and reads
of the cells and files they leave.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import attrs

from proxy.app import create_app
from proxy.catalog.base import CellRecord, JobRecord
from proxy.config import load_settings
from proxy.keys import SERVICES
from tests.conftest import API_KEY
from tests.proxy.catalog_backends import ADMIN_URL
from tests.proxy.image_helpers import AOI
from tests.proxy.runner_helpers import TileUpstream

ROOT = Path(__file__).parents[2]
ENDED = ("done", "failed", "cancelled")
LEASE = 1.5  # seconds: a killed or stopped worker's cell is free again soon after
IDLE_POLL = 300.0  # longer than any test: only a NOTIFY wakes an idle worker


def worker_env(url: str, data_dir: Path, outputs: Path, **extra: str) -> dict[str, str]:
    """The environment of one worker: its own data folder, the shared catalog and outputs."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGERY_PROXY_DATA_DIR": str(data_dir),
        "IMAGERY_PROXY_OUTPUTS_DIR": str(outputs),
        "IMAGERY_PROXY_CATALOG_URL": url,
        "IMAGERY_PROXY_JOBS": "postgres",
        "IMAGERY_PROXY_API_KEYS": API_KEY,
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IMAGERY_PROXY_JOB_LEASE_SECONDS": str(LEASE),
        "IMAGERY_PROXY_JOB_HEARTBEAT_SECONDS": "0.3",
        "IMAGERY_PROXY_JOB_POLL_SECONDS": "0.1",
        "IMAGERY_PROXY_JOB_IDLE_POLL_SECONDS": str(IDLE_POLL),
        "IMAGERY_PROXY_UPSTREAM_RETRIES": "0",
        "IMAGERY_PROXY_LOG_LEVEL": "INFO",
        **extra,
    }


@attrs.define
class Worker:
    """One ``imagery-proxy worker`` process and its log."""

    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def stop(self) -> int:
        """SIGTERM (SIGCONT first: a stopped process handles no signal); its exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return int(self.process.returncode or 0)


@attrs.define
class Cluster:
    """A PostgreSQL catalog shared by a serving replica (``api``) and worker processes."""

    url: str
    tmp: Path
    api: Any  # aiohttp test client of the serving replica
    upstream: TileUpstream
    workers: list[Worker] = attrs.field(factory=list)

    @property
    def outputs(self) -> Path:
        return self.tmp / "outputs"

    async def start_worker(self, slots: int = 1, **extra: str) -> Worker:
        n = len(self.workers)
        data_dir = self.tmp / f"machine-{n}"
        data_dir.mkdir(exist_ok=True)
        log = self.tmp / f"worker-{n}.log"
        with log.open("wb") as fh:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.cli", "worker", "--slots", str(slots),
                cwd=self.tmp, env=worker_env(self.url, data_dir, self.outputs, **extra),
                stdout=fh, stderr=fh,
            )  # fmt: skip
        worker = Worker(process, log)
        self.workers.append(worker)
        await wait_for(lambda: "cells at once" in worker.text(), what="the worker to start")
        return worker

    async def start_download(self, name: str = "field") -> str:
        """A saved server over the upstream and a download import: the job's id."""
        url = self.upstream.url
        resp = await self.api.post("/servers", json={"type": "xyz", "name": "gt", "url": url})
        assert resp.status == 201, await resp.text()
        server_id = (await resp.json())["id"]
        body = {"server_id": server_id, "name": name, "aois": AOI, "method": "download",
                "resolution": 2.0, "max_cell_pixels": 256}  # fmt: skip
        resp = await self.api.post("/imports", json=body)
        assert resp.status == 202, await resp.text()
        job_id: str = (await resp.json())["job"]["id"]
        return job_id

    async def job(self, job_id: str) -> JobRecord:
        record = await self.api.server.app[SERVICES].catalog.jobs.get(job_id)
        assert record is not None
        return record

    async def cells(self, job_id: str) -> list[CellRecord]:
        cells: list[CellRecord] = await self.api.server.app[SERVICES].catalog.cells.of_job(job_id)
        return cells

    async def wait_ended(self, job_id: str, timeout: float = 120) -> JobRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = await self.job(job_id)
            if record.state in ENDED:
                return record
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end: {await self.job(job_id)}")

    async def running_cell_of(self, job_id: str, worker: Worker) -> CellRecord:
        """Wait until ``worker`` runs a cell of the job; that cell."""
        tag = f":{worker.pid}:"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for cell in await self.cells(job_id):
                if cell.state == "running" and tag in (cell.owner or ""):
                    return cell
            await asyncio.sleep(0.02)
        raise AssertionError(f"worker {worker.pid} ran no cell of {job_id}")

    def files(self) -> dict[str, tuple[int, str]]:
        """Every cell file under the outputs: name -> (mtime ns, sha256)."""
        return {
            p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in self.outputs.rglob("*.tif")
            if not p.name.startswith(".")
        }

    def temporaries(self) -> list[Path]:
        return [p for p in self.outputs.rglob("*") if p.name.startswith(".")]


@asynccontextmanager
async def cluster(
    url: str, tmp: Path, aiohttp_client: Any, upstream: TileUpstream
) -> AsyncIterator[Cluster]:
    """The serving replica (runs no cell: jobs = postgres, job_workers unset) and, on
    exit, every worker started stopped."""
    settings = load_settings(
        env={},
        data_dir=tmp / "replica",
        outputs_dir=tmp / "outputs",
        catalog_url=url,
        jobs="postgres",
        api_keys=(API_KEY,),
        allowed_networks=("127.0.0.0/8",),
        executor_workers=2,
    )
    api = await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
    assert api.server.app[SERVICES].settings.serve_job_slots == 0
    found = Cluster(url, tmp, api, upstream)
    try:
        yield found
    finally:
        for worker in found.workers:
            await worker.stop()


async def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def listeners(url: str) -> list[int]:
    """Backend pids of the database's connections whose last statement was a LISTEN."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'", name
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await admin.close()


async def terminate_connections(url: str) -> int:
    """Cut every connection to the database (as a PostgreSQL restart would); how many."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return sum(1 for r in rows if r["cut"])
    finally:
        await admin.close()
