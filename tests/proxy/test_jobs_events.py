"""The jobs API's live side: Server-Sent Events, the job share of a server, job metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from proxy.app import create_app
from proxy.net.limits import job_slots
from tests.conftest import API_KEY
from tests.proxy.runner_helpers import CENTER_TILE, TileFileKind, tiles_of_cell
from tests.proxy.test_jobs_runner import job_settings, start_job, upstream, wait_for

__all__ = ["upstream"]  # the fixture


@pytest.fixture
def kind() -> TileFileKind:
    return TileFileKind()


async def read_events(resp) -> list[tuple[str, Any]]:
    """Every event of the stream until it closes: (name, data)."""
    events, name = [], None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, orjson.loads(line[len("data: ") :])))
    return events


async def test_the_event_stream_sends_job_and_cell_changes_then_end(
    aiohttp_client, tmp_path, upstream, kind
):
    client = await aiohttp_client(
        create_app(job_settings(tmp_path), kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    for index in range(3):
        upstream.gated.update(tuple(t) for t in tiles_of_cell(index, 1))
    job_id = await start_job(client, upstream, cells=3, per_cell=1)
    resp = await client.get(f"/jobs/{job_id}/events")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    reader = asyncio.create_task(read_events(resp))
    while upstream.gated_in_flight < 2:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # the stream has seen the running cells
    upstream.gate.set()
    events = await asyncio.wait_for(reader, 30)

    names = [name for name, _ in events]
    assert names[0] == "job" and names[-1] == "end" and names.count("end") == 1
    assert events[-1][1]["state"] == "done" and events[-1][1]["id"] == job_id
    cells = [data for name, data in events if name == "cell"]
    for index in range(3):
        states = [c["state"] for c in cells if c["index"] == index]
        assert states[-1] == "done", (index, states)
    assert {"index": 0, "state": "running", "error": None} in cells
    jobs = [data for name, data in events if name == "job"]
    assert [j["cells"]["done"] for j in jobs] == sorted(j["cells"]["done"] for j in jobs)
    assert jobs[0]["state"] in ("pending", "running")


async def test_an_ended_job_streams_its_state_and_end_at_once(
    aiohttp_client, tmp_path, upstream, kind
):
    client = await aiohttp_client(
        create_app(job_settings(tmp_path), kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    job_id = await start_job(client, upstream, cells=1, per_cell=1)
    await wait_for(client, job_id)
    events = await read_events(await client.get(f"/jobs/{job_id}/events"))
    assert [name for name, _ in events] == ["job", "cell", "end"]
    assert (await client.get("/jobs/nope/events")).status == 404


def test_jobs_get_half_of_a_servers_concurrency_and_at_least_one_slot():
    assert [job_slots(n, 0.5) for n in (1, 2, 3, 4, 8)] == [1, 1, 1, 2, 4]
    assert job_slots(8, 1.0) == 8 and job_slots(8, 0.01) == 1


async def test_map_clients_are_served_while_a_job_holds_its_share_of_the_server(
    aiohttp_client, tmp_path, upstream, kind
):
    settings = job_settings(tmp_path, job_workers=4)  # four cells at once want 4 requests
    client = await aiohttp_client(
        create_app(settings, kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    for index in range(6):
        upstream.gated.update(tuple(t) for t in tiles_of_cell(index, 1))
    job_id = await start_job(client, upstream, cells=6, per_cell=1, max_concurrency=4)
    while upstream.gated_in_flight < 2:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the other two slots are queued on the job share, not upstream
    assert upstream.gated_in_flight == 2

    # Uncached tiles of the same server, asked by a map client while the job holds its
    # share: the other half of max_concurrency answers them.
    server_id = (await (await client.get(f"/jobs/{job_id}")).json())["server_id"]
    asks = [(CENTER_TILE.x + dx, CENTER_TILE.y + 2) for dx in range(3)]
    answers = await asyncio.wait_for(
        asyncio.gather(*(client.get(f"/servers/{server_id}/tiles/15/{x}/{y}") for x, y in asks)),
        10,
    )
    assert [r.status for r in answers] == [200, 200, 200]
    assert all(upstream.hits[(x, y, 15)] == 1 for x, y in asks)
    assert upstream.gated_in_flight == 2  # the job still holds its share

    upstream.gate.set()
    job = await wait_for(client, job_id)
    assert job["state"] == "done" and upstream.max_gated_in_flight == 2


async def test_metrics_count_jobs_by_state_cells_and_bytes(
    aiohttp_client, tmp_path, upstream, kind
):
    client = await aiohttp_client(
        create_app(job_settings(tmp_path), kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
    )
    upstream.broken.add(tuple(tiles_of_cell(1, 1)[0]))
    job_id = await start_job(client, upstream, cells=2, per_cell=1)
    job = await wait_for(client, job_id)
    text = await (await client.get("/metrics")).text()
    assert 'imagery_proxy_jobs{state="failed"} 1.0' in text
    assert 'imagery_proxy_jobs{state="running"} 0.0' in text
    assert 'imagery_proxy_job_cells_total{kind="tiles",outcome="done"} 1.0' in text
    assert 'imagery_proxy_job_cells_total{kind="tiles",outcome="failed"} 1.0' in text
    written = job["bytes_written"]
    assert f'imagery_proxy_job_bytes_written_total{{kind="tiles"}} {float(written)}' in text
