"""Jobs in the catalog (SQLite, PostgreSQL): claims, leases, fencing, cancel, retry, pause."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from proxy.catalog.base import NewCell, NewJob
from proxy.catalog.migrations import MIGRATIONS
from proxy.catalog.open import open_catalog_at
from proxy.catalog.sqlite import open_catalog

LEASE = 30.0
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def new_job(name: str = "j", kind: str = "test") -> NewJob:
    return NewJob(kind=kind, name=name, server_id="s1", image_id=None, params={"p": 1})


def new_cells(n: int) -> list[NewCell]:
    return [NewCell(index=i, spec={"i": i}, polygon=SQUARE) for i in range(n)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def stores(backend, clock):
    catalog = backend.with_clock(await backend.open(), clock)
    yield catalog.jobs, catalog.cells
    await catalog.close()


async def test_a_job_is_stored_with_its_cells_pending(stores):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(3))
    assert job.state == "pending" and job.cells.pending == 3 and job.cells.total == 3
    assert job.params == {"p": 1} and job.started_at is None
    listed = await cells.of_job(job.id)
    assert [(c.index, c.state, c.attempt, c.spec) for c in listed] == [
        (i, "pending", 0, {"i": i}) for i in range(3)
    ]
    assert listed[0].polygon == SQUARE


async def test_claims_take_each_cell_once_then_none(stores):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(3))
    claims = [await cells.claim("a", LEASE) for _ in range(4)]
    assert [c.index if c else None for c in claims] == [0, 1, 2, None]
    assert all(c.attempt == 1 and c.kind == "test" and c.params == {"p": 1} for c in claims if c)
    record = await jobs.get(job.id)
    assert record is not None and record.state == "running" and record.started_at is not None
    assert record.cells.running == 3


async def test_claims_keep_to_their_job_and_kinds(stores):
    jobs, cells = stores
    first = await jobs.create(new_job(), new_cells(1))
    other = await jobs.create(new_job(kind="other"), new_cells(1))
    assert await cells.claim("a", LEASE, kinds=["nope"]) is None
    claim = await cells.claim("a", LEASE, job_id=other.id)
    assert claim is not None and claim.job_id == other.id
    claim = await cells.claim("a", LEASE, kinds=["test"])
    assert claim is not None and claim.job_id == first.id


async def test_an_expired_lease_is_reclaimed_and_the_stale_attempt_is_refused(stores, clock):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(1))
    stale = await cells.claim("a", LEASE)
    assert stale is not None
    clock.now += LEASE - 1
    assert await cells.claim("b", LEASE) is None  # lease still held
    clock.now += 2
    fresh = await cells.claim("b", LEASE)
    assert fresh is not None and fresh.index == stale.index and fresh.attempt == 2

    # The first owner wakes up: none of its writes count any more.
    assert not await cells.heartbeat(job.id, 0, "a", stale.attempt, LEASE)
    assert not await cells.holds(job.id, 0, "a", stale.attempt)
    assert not await cells.complete(
        job.id, 0, stale.attempt, output="a.tif", bytes_written=5, upstream_requests=1
    )
    assert not await cells.fail(job.id, 0, stale.attempt, "boom")
    assert not await cells.release(job.id, 0, stale.attempt)

    assert await cells.complete(
        job.id, 0, fresh.attempt, output="b.tif", bytes_written=7, upstream_requests=3
    )
    [cell] = await cells.of_job(job.id)
    assert (cell.state, cell.output, cell.bytes, cell.owner) == ("done", "b.tif", 7, None)
    # A completed cell takes no second result, not even from its own attempt.
    assert not await cells.fail(job.id, 0, fresh.attempt, "late")


async def test_heartbeat_extends_only_the_owners_own_lease(stores, clock):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(1))
    claim = await cells.claim("a", LEASE)
    assert claim is not None
    clock.now += 20
    assert not await cells.heartbeat(job.id, 0, "b", claim.attempt, LEASE)  # foreign owner
    assert not await cells.heartbeat(job.id, 0, "a", claim.attempt + 1, LEASE)  # other attempt
    [cell] = await cells.of_job(job.id)
    assert cell.lease_until == 1_000_000.0 + LEASE  # unchanged by the refused beats
    assert await cells.heartbeat(job.id, 0, "a", claim.attempt, LEASE)
    clock.now += LEASE - 1  # past the first lease, within the renewed one
    assert await cells.claim("b", LEASE) is None


async def test_cancel_stops_claims_and_voids_running_attempts(stores):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(3))
    running = await cells.claim("a", LEASE)
    assert running is not None
    assert await jobs.cancel(job.id) == "running"
    assert await cells.claim("b", LEASE) is None
    assert not await cells.complete(
        job.id, 0, running.attempt, output=None, bytes_written=1, upstream_requests=0
    )
    record = await jobs.get(job.id)
    assert record is not None and record.state == "cancelled" and record.finished_at
    assert record.cells.pending == 3 and record.cells.running == 0
    assert await jobs.cancel(job.id) == "cancelled"  # again: nothing changes
    assert await jobs.cancel("nope") is None
    assert await jobs.finishable() == []  # a cancelled job has no end to run

    assert await jobs.retry(job.id) == 3  # a cancelled job resumes its unfinished cells
    resumed = await cells.claim("b", LEASE)
    assert resumed is not None and resumed.index == 0 and resumed.attempt == 2


async def test_a_failed_cell_ends_the_job_failed_and_retry_runs_only_it(stores):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(2))
    c0, c1 = await cells.claim("a", LEASE), await cells.claim("a", LEASE)
    assert c0 is not None and c1 is not None
    assert await jobs.finishable() == []
    assert await cells.fail(job.id, 0, c0.attempt, "upstream 500 for this area", 4)
    assert await cells.complete(job.id, 1, c1.attempt, output="1.tif", bytes_written=10,
                                upstream_requests=2)  # fmt: skip
    assert await jobs.finishable() == [job.id]
    assert await jobs.begin_finish(job.id, "a", LEASE)
    assert not await jobs.begin_finish(job.id, "b", LEASE)  # one end only
    assert await jobs.end_finish(job.id, "b", None) is None
    assert await jobs.end_finish(job.id, "a", None) == "failed"
    record = await jobs.get(job.id)
    assert record is not None and record.state == "failed"
    assert (record.cells.done, record.cells.failed) == (1, 1)
    assert (record.bytes_written, record.upstream_requests) == (10, 6)
    [failed, _] = await cells.of_job(job.id)
    assert failed.error == "upstream 500 for this area"

    assert await jobs.cancel(job.id) == "failed"  # ended: the caller answers 409
    assert await jobs.retry(job.id) == 1
    record = await jobs.get(job.id)
    assert record is not None and record.state == "pending" and record.finished_at is None
    again = await cells.claim("b", LEASE)
    assert again is not None and (again.index, again.attempt) == (0, 2)
    assert await cells.complete(job.id, 0, 2, output="0.tif", bytes_written=3, upstream_requests=1)
    assert await jobs.begin_finish(job.id, "b", LEASE)
    assert await jobs.end_finish(job.id, "b", None) == "done"
    assert await jobs.retry(job.id) == 0  # nothing failed: the caller answers 409


async def test_an_abandoned_end_is_taken_over_after_its_lease(stores, clock):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(1))
    claim = await cells.claim("a", LEASE)
    assert claim is not None
    await cells.complete(job.id, 0, 1, output=None, bytes_written=0, upstream_requests=0)
    assert await jobs.begin_finish(job.id, "a", LEASE)  # then "a" dies
    assert await jobs.finishable() == []
    clock.now += LEASE + 1
    assert await jobs.finishable() == [job.id]
    assert await jobs.begin_finish(job.id, "b", LEASE)
    assert await jobs.end_finish(job.id, "b", "the STAC collection could not be written") == (
        "failed"
    )


async def test_a_pause_holds_claims_until_it_ends_and_released_cells_keep_their_attempts(
    stores, clock
):
    jobs, cells = stores
    job = await jobs.create(new_job(), new_cells(2))
    claim = await cells.claim("a", LEASE)
    assert claim is not None
    assert await cells.release(job.id, 0, claim.attempt)
    await jobs.pause(job.id, clock.now + 60, "quota", "1000 requests a day")
    record = await jobs.get(job.id)
    assert record is not None and record.state == "paused" and record.paused_reason == "quota"
    assert await cells.claim("a", LEASE) is None
    clock.now += 61
    again = await cells.claim("a", LEASE)
    assert again is not None and (again.index, again.attempt) == (0, 2)
    record = await jobs.get(job.id)
    assert record is not None and record.state == "running" and record.paused_until is None


async def test_jobs_are_listed_newest_first_and_counted_by_state(stores):
    jobs, _ = stores
    a = await jobs.create(new_job("a"), new_cells(1))
    b = await jobs.create(new_job("b"), new_cells(1))
    await jobs.cancel(a.id)
    assert [j.id for j in await jobs.recent()] == [b.id, a.id]
    assert [j.id for j in await jobs.recent(state="cancelled")] == [a.id]
    assert [j.id for j in await jobs.recent(limit=1)] == [b.id]
    assert await jobs.count_by_state() == {"pending": 1, "cancelled": 1}


def _claim_all(url: str, path: str, owner: str, start, out) -> None:  # type: ignore[no-untyped-def]
    """In another process: claim cells until none is left; send what was claimed."""

    async def run() -> list[tuple[str, int]]:
        catalog, quota = await open_catalog_at(url, Path(path))
        await quota.close()
        claimed = []
        start.wait()
        while (claim := await catalog.cells.claim(owner, LEASE)) is not None:
            claimed.append((claim.job_id, claim.index))
            await asyncio.sleep(0.002)  # as a cell would take time: the other one claims meanwhile
        await catalog.close()
        return claimed

    out.put(asyncio.run(run()))


async def test_two_processes_racing_on_claims_take_every_cell_exactly_once(backend):
    catalog = await backend.open()
    ids = [(await catalog.jobs.create(new_job(), new_cells(200))).id for _ in range(2)]
    await catalog.close()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()  # both opened the catalog before claiming
    procs = [
        ctx.Process(
            target=_claim_all, args=(backend.url, str(backend.sqlite_path), f"p{n}", start, out)
        )
        for n in range(2)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    claimed = got[0] + got[1]
    assert sorted(claimed) == sorted((j, i) for j in ids for i in range(200))
    assert len(got[0]) > 50 and len(got[1]) > 50, [len(g) for g in got]  # both took part


async def test_the_jobs_step_migrates_a_file_of_the_quota_schema(tmp_path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:4]:  # the schema before jobs
        for statement in step:
            db.execute(statement)
    db.execute("PRAGMA user_version = 4")
    db.close()
    catalog = await open_catalog(path)
    try:
        job = await catalog.jobs.create(new_job(), new_cells(2))
        assert (await catalog.jobs.get(job.id)) == job
    finally:
        await catalog.close()


async def test_cells_of_a_dead_runner_of_this_host_are_given_back_at_start(tmp_path):
    import subprocess
    import sys

    from proxy.config import load_settings
    from proxy.jobs.runner import JobRunner, make_owner
    from proxy.services import open_services

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = make_owner().split(":")[0]
    async with open_services(load_settings(env={}, data_dir=tmp_path)) as services:
        catalog = services.catalog
        job = await catalog.jobs.create(new_job(), new_cells(3))
        await catalog.cells.claim(f"{host}:{dead.stdout.strip()}:abcd", LEASE)  # died
        await catalog.cells.claim(f"{host}:{os.getpid()}:ef01", LEASE)  # alive: this process
        await catalog.cells.claim(f"elsewhere:{dead.stdout.strip()}:abcd", LEASE)  # not ours
        runner = JobRunner(services, {}, slots=1, lease=LEASE, heartbeat=10)
        assert await runner.reclaim_dead() == 1
        cells = await catalog.cells.of_job(job.id)
        assert [c.state for c in cells] == ["pending", "running", "running"]
