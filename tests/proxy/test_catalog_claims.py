"""Claims shared by replicas: two catalogs (two connection pools, as two processes have)
on one database, on each backend: every cell claimed once under contention, a stale
attempt fenced off, an expired lease reclaimed, cancel and retry racing with claims.
"""

from __future__ import annotations

import asyncio

import asyncpg
import attrs

from proxy.app import create_app
from proxy.catalog.base import NewCell, NewJob
from proxy.catalog.postgres_jobs import CELLS_CHANNEL
from proxy.config import load_settings
from proxy.keys import SERVICES
from tests.conftest import API_KEY
from tests.proxy.catalog_backends import Backend, terminate_connections

LEASE = 30.0
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(name: str = "j") -> NewJob:
    return NewJob(kind="test", name=name, server_id="s1", image_id=None, params={})


def cells(n: int) -> list[NewCell]:
    return [NewCell(index=i, spec={"i": i}, polygon=SQUARE) for i in range(n)]


async def test_many_claimers_on_two_pools_take_every_cell_once(backend: Backend):
    replicas = [await backend.open() for _ in range(2)]
    try:
        ids = [(await replicas[0].jobs.create(job(), cells(60))).id for _ in range(2)]

        async def claim_all(n: int) -> list[tuple[str, int]]:
            claimed = []
            cells_store = replicas[n % 2].cells
            while (claim := await cells_store.claim(f"w{n}", LEASE)) is not None:
                claimed.append((claim.job_id, claim.index))
                assert await cells_store.complete(
                    claim.job_id, claim.index, claim.attempt, output=None, bytes_written=1,
                    upstream_requests=1,
                )  # fmt: skip
            return claimed

        got = await asyncio.gather(*(claim_all(n) for n in range(8)))
        claimed = [c for g in got for c in g]
        assert sorted(claimed) == sorted((j, i) for j in ids for i in range(60))
        assert sum(1 for g in got if g) > 1  # several claimers took part
        for job_id in ids:
            record = await replicas[1].jobs.get(job_id)
            assert record is not None and record.cells.done == 60 and record.bytes_written == 60
            assert {c.attempt for c in await replicas[1].cells.of_job(job_id)} == {1}
    finally:
        for catalog in replicas:
            await catalog.close()


async def test_a_paused_worker_past_its_lease_is_fenced_off(backend: Backend):
    early, late = Clock(1_000_000.0), Clock(1_000_000.0 + LEASE + 1)
    asleep = backend.with_clock(await backend.open(), early)  # the worker that paused
    awake = backend.with_clock(await backend.open(), late)  # another replica, after its lease
    try:
        made = await asleep.jobs.create(job(), cells(1))
        first = await asleep.cells.claim("sleeper", LEASE)
        assert first is not None and first.attempt == 1
        assert await awake.cells.claim("other", LEASE, job_id="nope") is None
        second = await awake.cells.claim("other", LEASE)  # the expired lease is reclaimed
        assert second is not None and (second.index, second.attempt) == (0, 2)
        # The sleeper wakes: its heartbeat, its completion and its failure all count for nothing.
        assert not await asleep.cells.heartbeat(made.id, 0, "sleeper", 1, LEASE)
        assert not await asleep.cells.holds(made.id, 0, "sleeper", 1)
        assert not await asleep.cells.complete(
            made.id, 0, 1, output="stale.tif", bytes_written=999, upstream_requests=5
        )
        assert not await asleep.cells.fail(made.id, 0, 1, "stale")
        assert await awake.cells.complete(
            made.id, 0, 2, output="cell.tif", bytes_written=10, upstream_requests=2
        )
        (cell,) = await asleep.cells.of_job(made.id)
        assert (cell.state, cell.output, cell.bytes, cell.upstream_requests, cell.attempt) == (
            "done",
            "cell.tif",
            10,
            2,
            2,
        )
    finally:
        await asleep.close()
        await awake.close()


async def test_cancel_and_retry_racing_with_claimers_leave_a_consistent_job(backend: Backend):
    replicas = [await backend.open() for _ in range(2)]
    try:
        made = await replicas[0].jobs.create(job(), cells(40))
        stop = asyncio.Event()
        completed: list[int] = []

        async def worker(n: int) -> None:
            store = replicas[n % 2].cells
            while not stop.is_set():
                claim = await store.claim(f"w{n}", LEASE)
                if claim is None:
                    await asyncio.sleep(0.005)
                    continue
                if await store.complete(
                    claim.job_id, claim.index, claim.attempt, output=None, bytes_written=1,
                    upstream_requests=0,
                ):  # fmt: skip
                    completed.append(claim.index)

        async def toggler() -> None:
            for _ in range(6):
                await replicas[1].jobs.cancel(made.id)
                await asyncio.sleep(0.01)
                await replicas[0].jobs.retry(made.id)
                await asyncio.sleep(0.01)

        workers = [asyncio.create_task(worker(n)) for n in range(4)]
        await toggler()
        while (await replicas[0].jobs.get(made.id)).cells.done < 40:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*workers)
        assert sorted(completed) == list(range(40))  # each cell's result counted once
        record = await replicas[1].jobs.get(made.id)
        assert record is not None and record.bytes_written == 40 and record.cells.running == 0
    finally:
        for catalog in replicas:
            await catalog.close()


async def test_ready_names_the_catalog_backend(aiohttp_client, tmp_path, backend: Backend):
    settings = load_settings(
        env={}, data_dir=tmp_path / "data", api_keys=(API_KEY,), catalog_url=backend.url
    )
    client = await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
    resp = await client.get("/ready")
    body = await resp.json()
    using = {"catalog": backend.name, "cache": "local", "jobs": "inline", "outputs": "local"}
    assert resp.status == 200 and body["using"] == using
    assert body["backends"]["catalog"] == "ok"
    assert client.app[SERVICES].catalog.database.backend == backend.name
    metrics = await (await client.get("/metrics")).text()
    assert f'imagery_proxy_backend{{implementation="{backend.name}",kind="catalog"}} 1.0' in metrics
    # the API's servers live in the chosen catalog
    server = {"type": "xyz", "name": "a", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png"}
    made = await client.post("/servers", json=server)
    listed = await (await client.get("/servers")).json()
    assert made.status in (200, 201), await made.text()
    catalog = await attrs.evolve(backend, sqlite_path=settings.catalog_path).open()
    try:
        assert (
            [s.id for s in await catalog.servers.all()]
            == [s["id"] for s in listed["servers"]]
            != []
        )
    finally:
        await catalog.close()


async def test_the_catalog_reconnects_after_postgresql_cut_its_connections(postgresql: Backend):
    catalog = await postgresql.open()
    try:
        made = await catalog.jobs.create(job(), cells(2))
        first = await catalog.cells.claim("w", LEASE)
        assert first is not None
        await terminate_connections(postgresql.url)  # as a restart of PostgreSQL does
        # The pool replaces the dead connections: work goes on, the claim still holds.
        assert await catalog.cells.heartbeat(made.id, first.index, "w", first.attempt, LEASE)
        assert await catalog.cells.complete(
            made.id, first.index, first.attempt, output=None, bytes_written=1, upstream_requests=0
        )
        assert (await catalog.jobs.get(made.id)).cells.done == 1  # type: ignore[union-attr]
        await catalog.ping()
    finally:
        await catalog.close()


async def test_idle_workers_listening_hear_of_claimable_cells(postgresql: Backend):
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgresql.url)
    catalog = await postgresql.open()  # made the schema (the listener only listens)
    await listener.add_listener(CELLS_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        made = await catalog.jobs.create(job(), cells(1))
        assert await asyncio.wait_for(heard.get(), 5) == made.id
        claim = await catalog.cells.claim("w", LEASE)
        assert claim is not None and await catalog.cells.release(made.id, 0, claim.attempt)
        assert await asyncio.wait_for(heard.get(), 5) == made.id  # given back: claimable again
        assert await catalog.cells.claim("dead", LEASE) is not None
        assert await catalog.cells.release_owner("dead") == 1  # a dead worker's cells
        assert await asyncio.wait_for(heard.get(), 5) == made.id
        claim = await catalog.cells.claim("w", LEASE)
        assert claim is not None and await catalog.cells.fail(made.id, 0, claim.attempt, "x")
        assert heard.empty()  # a failure makes nothing claimable
        assert await catalog.jobs.retry(made.id) == 1
        assert await asyncio.wait_for(heard.get(), 5) == made.id
    finally:
        await listener.close()
        await catalog.close()


async def test_a_retry_committing_while_the_end_waits_keeps_the_job_running(postgresql: Backend):
    catalog = await postgresql.open()
    other = await asyncpg.connect(postgresql.url)  # a retry, held open mid-transaction
    try:
        made = await catalog.jobs.create(job(), cells(1))
        claim = await catalog.cells.claim("w", LEASE)
        assert claim is not None and await catalog.cells.fail(made.id, 0, claim.attempt, "x")
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT idx FROM cells WHERE job_id = $1 FOR UPDATE", made.id)
        await other.execute("UPDATE cells SET state = 'pending' WHERE job_id = $1", made.id)
        await other.execute("UPDATE jobs SET state = 'pending' WHERE id = $1", made.id)
        end = asyncio.create_task(catalog.jobs.begin_finish(made.id, "finisher", LEASE))
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(500):  # until the end waits on the retry's locks
            if await other.fetchval(waiting):
                break
            await asyncio.sleep(0.01)
        await tx.commit()
        assert await end is False  # it read the retried cell, not the failed one
        record = await catalog.jobs.get(made.id)
        assert record is not None and record.state == "pending" and record.cells.pending == 1
    finally:
        await other.close()
        await catalog.close()
