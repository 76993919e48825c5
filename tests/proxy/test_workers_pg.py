"""``imagery-proxy worker`` processes sharing jobs through PostgreSQL (jobs = postgres).

Real worker subprocesses, each with its own data folder (another machine) and the outputs
folder shared, a fresh PostgreSQL database per test, the loopback tile upstream over the
ground truth, and a serving replica in the test process that makes the jobs and runs none.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime

import pytest

from tests.proxy.catalog_backends import create_database, drop_database
from tests.proxy.runner_helpers import TileUpstream
from tests.proxy.workers_pg_helpers import LEASE, Cluster, cluster, listeners, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def pg_url():
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    fake = TileUpstream(renderer)
    fake.delay = 0.05  # the slow upstream: a cell takes long enough to be caught running
    server = await aiohttp_server(fake.app, host="127.0.0.1")
    fake.url = str(server.make_url("")).rstrip("/") + "/t/{z}/{x}/{y}.png"
    return fake


@pytest.fixture
async def pair(pg_url, tmp_path, aiohttp_client, upstream):
    async with cluster(pg_url, tmp_path, aiohttp_client, upstream) as found:
        yield found


def assert_each_cell_once(found: Cluster, total: int) -> None:
    files = found.files()
    assert len(files) == total  # one file per cell, each written under its own name
    assert found.temporaries() == []


async def test_a_killed_workers_cell_is_finished_by_the_other_after_its_lease(pair):
    a = await pair.start_worker()
    b = await pair.start_worker()
    job_id = await pair.start_download()
    taken = await pair.running_cell_of(job_id, a)
    a.signal(signal.SIGKILL)
    await a.process.wait()

    job = await pair.wait_ended(job_id)
    assert job.state == "done", job
    cells = {c.index: c for c in await pair.cells(job_id)}
    assert all(c.state == "done" for c in cells.values())
    # The killed claim was attempt n; the cell was claimed again (by b: a is dead) once.
    again = cells[taken.index]
    assert again.attempt == taken.attempt + 1
    assert all(c.attempt == 1 for i, c in cells.items() if i != taken.index)
    assert b.process.returncode is None  # b ran to the end and is still up
    assert_each_cell_once(pair, job.cells.total)
    assert (pair.outputs / f"field-{job_id[:8]}" / "collection.json").is_file()


async def test_a_worker_stopped_past_its_lease_cannot_complete_or_replace_the_file(pair):
    a = await pair.start_worker()
    await pair.start_worker()
    job_id = await pair.start_download()
    taken = await pair.running_cell_of(job_id, a)
    a.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()

    job = await pair.wait_ended(job_id)  # b took the cell over once a's lease expired
    assert job.state == "done", job
    assert time.monotonic() - stopped_at > LEASE  # the lease, not a's death, freed it
    files = pair.files()
    cells = {c.index: c for c in await pair.cells(job_id)}
    assert cells[taken.index].attempt == taken.attempt + 1

    a.signal(signal.SIGCONT)
    # a wakes with its cell's claim gone: it cancels the cell, or its late outcome (done,
    # or failed: b's attempt removed its temporary; or given back: the server ended its
    # session, idle in a transaction while stopped) is refused by the attempt fence;
    # either way it says so, and goes on as a worker.
    dropped = ("claim lost", "completion rejected", "failure dropped", "release dropped")
    await wait_for(
        lambda: any(said in a.text() for said in dropped),
        what="the woken worker to drop its stale cell",
    )
    await asyncio.sleep(0.5)  # room for a late rename, if the fence let one through
    assert pair.files() == files  # same files, same bytes, same mtimes
    after = {c.index: c for c in await pair.cells(job_id)}
    assert after[taken.index].attempt == taken.attempt + 1
    assert after[taken.index].state == "done" and after[taken.index].owner is None
    assert (await pair.job(job_id)).state == "done"
    assert_each_cell_once(pair, job.cells.total)
    assert a.process.returncode is None
    assert await a.stop() == 0  # SIGTERM: a clean exit


async def test_cancel_and_retry_while_cells_are_leased(pair):
    workers = [await pair.start_worker(), await pair.start_worker()]
    job_id = await pair.start_download()
    for worker in workers:
        await pair.running_cell_of(job_id, worker)
    resp = await pair.api.post(f"/jobs/{job_id}/cancel")
    assert resp.status == 200, await resp.text()
    # The workers hear the cancel (NOTIFY) and give their cells up: none stays running.
    for _ in range(200):
        cells = await pair.cells(job_id)
        if not any(c.state == "running" for c in cells):
            break
        await asyncio.sleep(0.05)
    assert not any(c.state == "running" for c in cells)
    assert (await pair.job(job_id)).state == "cancelled"
    done_before = {c.index for c in cells if c.state == "done"}
    files_before = pair.files()
    assert len(files_before) == len(done_before)

    resp = await pair.api.post(f"/jobs/{job_id}/retry")
    assert resp.status == 200, await resp.text()
    job = await pair.wait_ended(job_id)
    assert job.state == "done", job
    cells = await pair.cells(job_id)
    assert all(c.state == "done" for c in cells)
    interrupted = [c for c in cells if c.index not in done_before and c.attempt > 1]
    assert interrupted  # the cells running at the cancel ran again after the retry
    files = pair.files()
    for name, stamp in files_before.items():
        assert files[name] == stamp  # done before the cancel: never rewritten
    assert_each_cell_once(pair, job.cells.total)


async def test_a_notify_wakes_an_idle_worker(pair, pg_url):
    worker = await pair.start_worker()
    await wait_for_listener(pg_url)
    await asyncio.sleep(0.3)  # its first look for work (there is none) is over
    created = time.time()
    job_id = await pair.start_download()
    job = await pair.wait_ended(job_id)
    assert job.state == "done", job
    assert job.started_at is not None
    started = datetime.fromisoformat(job.started_at).timestamp()
    # Its idle poll is 300 s: the claim came from the notification.
    assert started - created < 60
    assert str(worker.pid) in worker.text()


async def test_workers_reconnect_after_their_connections_are_cut(pair, pg_url):
    from tests.proxy.workers_pg_helpers import terminate_connections

    workers = [await pair.start_worker(), await pair.start_worker()]
    await wait_for_listener(pg_url, count=2)
    job_id = await pair.start_download()
    await pair.running_cell_of(job_id, workers[0])
    assert await terminate_connections(pg_url) >= 2  # as a PostgreSQL restart would
    job = await pair.wait_ended(job_id)
    assert job.state == "done", job
    assert_each_cell_once(pair, job.cells.total)
    # Both listeners came back; a new job reaches the idle workers by NOTIFY again.
    await wait_for_listener(pg_url, count=2)
    second = await pair.start_download(name="second")
    job = await pair.wait_ended(second)
    assert job.state == "done", job
    for worker in workers:
        assert "job listener: reconnected" in worker.text()
        assert worker.process.returncode is None


async def wait_for_listener(url: str, count: int = 1) -> None:
    for _ in range(400):
        if len(await listeners(url)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no worker LISTENs")


async def test_sigterm_gives_the_running_cells_back_at_once(pair):
    worker = await pair.start_worker(slots=2)
    job_id = await pair.start_download()
    taken = await pair.running_cell_of(job_id, worker)
    assert await worker.stop() == 0
    cell = {c.index: c for c in await pair.cells(job_id)}[taken.index]
    assert cell.owner is None and cell.state in ("pending", "done")  # not left leased
    assert not any(c.state == "running" for c in await pair.cells(job_id))
    assert "giving running cells back" in worker.text()
