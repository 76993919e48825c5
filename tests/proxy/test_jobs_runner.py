"""The job runner with a real kind over a loopback upstream: run, fail, retry, cancel,
quota pause, resume after a restart, and the jobs API's answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from proxy.app import create_app
from proxy.config import load_settings
from proxy.keys import JOBS
from tests.conftest import API_KEY
from tests.proxy.runner_helpers import TileFileKind, TileUpstream, tiles_of_cell
from tests.proxy.tile_helpers import add_server

ENDED = ("done", "failed", "cancelled")


def job_settings(tmp_path: Path, **extra: Any):
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "api_keys": (API_KEY,),
        "allowed_networks": ("127.0.0.0/8",),
        "executor_workers": 2,
        "job_workers": 2,
        "job_poll_seconds": 0.05,
        "upstream_retries": 0,
    }
    return load_settings(env={}, **{**values, **extra})


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    fake = TileUpstream(renderer)
    server = await aiohttp_server(fake.app, host="127.0.0.1")
    fake.url = str(server.make_url("")).rstrip("/") + "/t/{z}/{x}/{y}.png"
    return fake


@pytest.fixture
def kind() -> TileFileKind:
    return TileFileKind()


@pytest.fixture
async def client(aiohttp_client, tmp_path, kind):
    app = create_app(job_settings(tmp_path), kinds={"tiles": kind})
    return await aiohttp_client(app, headers={"X-API-Key": API_KEY})


async def start_job(client, upstream, cells: int, per_cell: int = 2, **server: Any) -> str:
    server_id = await add_server(client, {"type": "xyz", "url": upstream.url, **server})
    jobs = client.server.app[JOBS]
    record = await jobs.create(
        "tiles",
        name="t",
        server_id=server_id,
        image_id=None,
        params={"cells": cells, "per_cell": per_cell},
    )
    return record.id


async def job_json(client, job_id: str) -> dict[str, Any]:
    resp = await client.get(f"/jobs/{job_id}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def wait_for(client, job_id: str, states=ENDED, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the job until it is in one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await job_json(client, job_id)
        if job["state"] in states:
            return job
        if loop.time() > deadline:
            cells = await (await client.get(f"/jobs/{job_id}/cells.geojson")).json()
            raise AssertionError((job, [f["properties"] for f in cells["features"]]))
        await asyncio.sleep(0.05)


def outputs(client) -> Path:
    return client.server.app[JOBS].services.settings.outputs_root


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


async def test_a_job_runs_every_cell_once_and_ends_done(client, upstream, kind):
    job_id = await start_job(client, upstream, cells=4, per_cell=2)
    job = await wait_for(client, job_id)
    assert job["state"] == "done" and job["cells"] == {
        "pending": 0,
        "running": 0,
        "done": 4,
        "failed": 0,
    }
    assert job["cells_total"] == 4 and job["upstream_requests"] == 8
    assert job["finished_at"] and job["started_at"] and job["eta_seconds"] is None
    assert job["rate"]["cells_per_s"] > 0 and job["links"]["self"] == f"/jobs/{job_id}"
    assert kind.finished == [job_id]
    total = 0
    for index in range(4):
        body = (outputs(client) / job_id / f"cell_{index}.bin").read_bytes()
        expected = b"".join(upstream.body(*t) for t in tiles_of_cell(index, 2))
        assert body == expected
        total += len(body)
    assert job["bytes_written"] == total
    assert all(n == 1 for n in upstream.hits.values()) and len(upstream.hits) == 8
    assert leftovers(outputs(client)) == []


async def test_the_jobs_api_lists_and_maps_the_cells(client, upstream):
    job_id = await start_job(client, upstream, cells=2, per_cell=1)
    await wait_for(client, job_id)
    resp = await client.get("/jobs")
    listed = (await resp.json())["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    assert (await (await client.get("/jobs?state=running")).json()) == {"jobs": []}
    resp = await client.get(f"/jobs/{job_id}/cells.geojson")
    assert resp.status == 200 and resp.content_type == "application/geo+json"
    features = (await resp.json())["features"]
    assert [f["properties"]["index"] for f in features] == [0, 1]
    first = features[0]
    assert first["geometry"]["type"] == "Polygon"
    assert first["properties"] == {
        "index": 0,
        "state": "done",
        "error": None,
        "attempt": 1,
        "output": f"{job_id}/cell_0.bin",
        "bytes": len(upstream.body(*tiles_of_cell(0, 1)[0])),
    }
    resp = await client.get("/jobs/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.post(f"/jobs/{job_id}/retry")
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "job_not_retryable"
    resp = await client.post(f"/jobs/{job_id}/cancel")
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "job_finished"


async def test_a_failing_cell_carries_its_error_the_others_complete_and_retry_fixes_it(
    client, upstream, kind
):
    bad = tuple(tiles_of_cell(1, 2)[1])
    upstream.broken.add(bad)  # the upstream answers 500 for the area of cell 1
    job_id = await start_job(client, upstream, cells=3, per_cell=2)
    job = await wait_for(client, job_id)
    assert job["state"] == "failed" and job["cells"]["done"] == 2 and job["cells"]["failed"] == 1
    features = (await (await client.get(f"/jobs/{job_id}/cells.geojson")).json())["features"]
    error = features[1]["properties"]["error"]
    assert features[1]["properties"]["state"] == "failed"
    assert f"tile {bad[2]}/{bad[0]}/{bad[1]}" in error and "500" in error
    assert "Traceback" not in error
    assert kind.finished == [job_id]
    assert not (outputs(client) / job_id / "cell_1.bin").exists()

    upstream.broken.clear()
    resp = await client.post(f"/jobs/{job_id}/retry")
    # live again: pending, or running if the runner claimed the cell before the answer
    assert resp.status == 200 and (await resp.json())["state"] in ("pending", "running")
    job = await wait_for(client, job_id)
    assert job["state"] == "done" and job["cells"]["done"] == 3
    assert (1, 2) in kind.started and len(kind.started) == 4  # only cell 1 ran again
    assert kind.finished == [job_id, job_id]
    assert leftovers(outputs(client)) == []


async def test_cancel_stops_running_cells_within_seconds_and_leaves_no_temporary_file(
    client, upstream, kind
):
    for index in range(6):
        upstream.gated.update(tuple(t) for t in tiles_of_cell(index, 2))
    job_id = await start_job(client, upstream, cells=6, per_cell=2)
    while upstream.gated_in_flight < 2:  # both slots hold a tile request
        await asyncio.sleep(0.02)
    resp = await client.post(f"/jobs/{job_id}/cancel")
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    for _ in range(100):
        if len(kind.cancelled) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(kind.cancelled) == [0, 1]
    upstream.gate.set()
    await asyncio.sleep(0.2)  # a runner that went on would start cell 2 by now
    assert sorted(i for i, _ in kind.started) == [0, 1]
    job = await job_json(client, job_id)
    assert job["state"] == "cancelled" and job["cells"]["pending"] == 6
    assert leftovers(outputs(client)) == [] and kind.finished == []
    resp = await client.post(f"/jobs/{job_id}/cancel")  # again: nothing to do
    assert resp.status == 200


async def test_a_spent_quota_pauses_the_job_which_resumes_by_itself(client, upstream, kind):
    kind.quota = 3  # requests before the upstream's budget is spent
    kind.quota_reset = 0.8  # it resets this long after
    jobs = client.server.app[JOBS]
    job_id = await start_job(client, upstream, cells=4, per_cell=2)
    while (record := await jobs.get(job_id)).state not in ("paused", *ENDED):
        await asyncio.sleep(0.01)
    assert record.state == "paused"
    job = jobs.view(record)
    assert job["paused"]["reason"] == "quota" and "budget" in job["paused"]["message"]
    assert job["paused"]["until"] > job["created_at"]
    job = await wait_for(client, job_id)
    assert job["state"] == "done" and job["cells"]["done"] == 4 and job["paused"] is None
    assert kind.finished == [job_id]
    # The cell that met the spent budget was given back, then ran again after the reset.
    assert any(attempt == 2 for _, attempt in kind.started)


async def test_a_restarted_service_resumes_the_job_without_fetching_done_cells_again(
    aiohttp_client, tmp_path, upstream, kind
):
    settings = job_settings(tmp_path)
    first = await aiohttp_client(
        create_app(settings, kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    for index in range(2, 6):
        upstream.gated.update(tuple(t) for t in tiles_of_cell(index, 2))
    job_id = await start_job(first, upstream, cells=6, per_cell=2)
    while upstream.gated_in_flight < 2:  # cells 0 and 1 done, 2 and 3 held upstream
        await asyncio.sleep(0.02)
    done = {i: (outputs(first) / job_id / f"cell_{i}.bin").stat() for i in (0, 1)}
    await first.close()  # the service stops mid-job: running cells go back to pending
    assert (await job_json_of(tmp_path, job_id))["cells"]["pending"] == 4

    upstream.gate.set()
    second = await aiohttp_client(
        create_app(settings, kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    job = await wait_for(second, job_id)
    assert job["state"] == "done" and job["cells"]["done"] == 6
    for index, stat in done.items():
        again = (outputs(second) / job_id / f"cell_{index}.bin").stat()
        assert (again.st_mtime_ns, again.st_size) == (stat.st_mtime_ns, stat.st_size)
    for index in (0, 1):  # done before the stop: not fetched again
        assert all(upstream.hits[tuple(t)] == 1 for t in tiles_of_cell(index, 2))
    assert leftovers(outputs(second)) == []


async def job_json_of(tmp_path: Path, job_id: str) -> dict[str, Any]:
    """The job as stored, read with a catalog of its own (no service running)."""
    from proxy.catalog.sqlite import open_catalog
    from proxy.jobs.views import job_view

    catalog = await open_catalog(tmp_path / "data" / "catalog.sqlite")
    try:
        record = await catalog.jobs.get(job_id)
        assert record is not None
        return job_view(record)
    finally:
        await catalog.close()


async def test_a_cancel_made_by_another_process_stops_the_running_cells(client, upstream, kind):
    for index in range(4):
        upstream.gated.update(tuple(t) for t in tiles_of_cell(index, 1))
    job_id = await start_job(client, upstream, cells=4, per_cell=1)
    while upstream.gated_in_flight < 2:
        await asyncio.sleep(0.02)
    # Straight in the catalog, as `imagery-proxy jobs cancel` or another worker does: this
    # process's runner learns it only by polling its claims.
    assert await client.server.app[JOBS].services.catalog.jobs.cancel(job_id) == "running"
    for _ in range(200):
        if len(kind.cancelled) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(kind.cancelled) == [0, 1]
    assert leftovers(outputs(client)) == []
    upstream.gate.set()  # let the upstream's held answers go


async def test_a_service_with_no_job_workers_leaves_jobs_to_others(
    aiohttp_client, tmp_path, upstream, kind
):
    app = create_app(job_settings(tmp_path, job_workers=0), kinds={"tiles": kind})
    client = await aiohttp_client(app, headers={"X-API-Key": API_KEY})
    job_id = await start_job(client, upstream, cells=1, per_cell=1)
    await asyncio.sleep(0.3)  # six polls of a runner, had there been one
    assert (await job_json(client, job_id))["state"] == "pending" and kind.started == []


async def test_a_cell_that_meets_a_dropped_catalog_is_given_back_not_failed(client, upstream, kind):
    kind.catalog_drops = 2  # as when PostgreSQL restarts under running cells
    job_id = await start_job(client, upstream, cells=3)
    job = await wait_for(client, job_id)
    assert job["state"] == "done" and job["cells"] == {
        "pending": 0,
        "running": 0,
        "done": 3,
        "failed": 0,
    }
    assert sum(attempt > 1 for _, attempt in kind.started) == 2  # both ran again


async def test_a_stop_while_a_claim_is_on_its_way_gives_the_claimed_cell_back(
    client, upstream, monkeypatch
):
    # The claim is committed, its answer not back yet when the runner stops: the cell must
    # not stay leased by a runner that is gone (a PostgreSQL worker's SIGTERM did that).
    jobs = client.server.app[JOBS]
    cells = jobs.services.catalog.cells
    real_claim = cells.claim
    claimed = asyncio.Event()

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        claim = await real_claim(*args, **kwargs)
        if claim is not None:
            claimed.set()
            await asyncio.sleep(5)  # the stop comes now
        return claim

    monkeypatch.setattr(cells, "claim", slow_claim)
    job_id = await start_job(client, upstream, cells=1)
    await asyncio.wait_for(claimed.wait(), 10)
    await asyncio.wait_for(jobs.stop(), 10)
    job = await job_json(client, job_id)
    assert job["cells"]["running"] == 0 and job["cells"]["pending"] == 1, job
