"""A real ``imagery-proxy serve`` killed with SIGKILL mid-job resumes the job when started
again: done cells are neither written nor fetched again, no temporary file remains."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from shapely.geometry import box, shape

from tests.proxy.image_helpers import AOI
from tests.proxy.runner_helpers import TMS, TileUpstream
from tests.proxy.test_workers import free_port

pytest.importorskip("proxy.jobs.materialize")

ROOT = Path(__file__).parents[2]
KEY = "durability-key"
HEADERS = {"X-API-Key": KEY}


async def start_serve(data_dir: Path, port: int, workers: int = 1) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGERY_PROXY_DATA_DIR": str(data_dir),
        "IMAGERY_PROXY_API_KEYS": KEY,
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IMAGERY_PROXY_JOB_WORKERS": "1",  # one cell at a time: a kill lands between cells
        "IMAGERY_PROXY_JOB_POLL_SECONDS": "0.1",
        "IMAGERY_PROXY_UPSTREAM_RETRIES": "0",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--workers", str(workers),
        cwd=data_dir.parent, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not start")


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, headers=HEADERS) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
async def test_a_killed_service_resumes_its_job_without_redoing_done_cells(
    aiohttp_server, renderer, tmp_path
):
    upstream = TileUpstream(renderer)
    upstream.delay = 0.02
    served = await aiohttp_server(upstream.app, host="127.0.0.1")
    url = str(served.make_url("")).rstrip("/") + "/t/{z}/{x}/{y}.png"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_serve(data_dir, port)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_healthy(session, base)
            body = {"type": "xyz", "name": "gt", "url": url, "max_concurrency": 4}
            async with session.post(f"{base}/servers", json=body, headers=HEADERS) as resp:
                assert resp.status == 201, await resp.text()
                server_id = (await resp.json())["id"]
            body = {
                "server_id": server_id,
                "name": "field",
                "aois": AOI,
                "method": "download",
                "resolution": 2.0,
                "max_cell_pixels": 256,
            }
            async with session.post(f"{base}/imports", json=body, headers=HEADERS) as resp:
                assert resp.status == 202, await resp.text()
                started = await resp.json()
            job_id = started["job"]["id"]
            assert started["image"]["id"] == started["job"]["image_id"]
            total = started["job"]["cells_total"]
            assert total >= 12

            while (await get_json(session, f"{base}/jobs/{job_id}"))["cells"]["done"] < 3:
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        features_at_kill = await _cells(data_dir, job_id)
        features = [f["properties"] for f in features_at_kill]
        done = [f for f in features if f["state"] == "done"]
        assert 3 <= len(done) < total
        root = data_dir / "outputs"
        before = {f["output"]: digest(root / f["output"]) for f in done}
        hits_before = dict(upstream.hits)

        proc = await start_serve(data_dir, port)
        try:
            await wait_healthy(session, base)
            for _ in range(1200):
                job = await get_json(session, f"{base}/jobs/{job_id}")
                if job["state"] in ("done", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.1)
            assert job["state"] == "done", job
            geojson = await get_json(session, f"{base}/jobs/{job_id}/cells.geojson")
        finally:
            proc.terminate()
            await proc.wait()

    after = {f["properties"]["index"]: f["properties"] for f in geojson["features"]}
    for cell in done:
        again = after[cell["index"]]
        assert again["attempt"] == 1 and again["output"] == cell["output"]  # never run again
        assert digest(root / cell["output"]) == before[cell["output"]]  # nor rewritten
    # Tiles asked of the upstream again after the restart are only those of the cells not
    # done at the kill (the one running then had requests in flight, never cached).
    again = [t for t, n in upstream.hits.items() if n > hits_before.get(t, 0) and t in hits_before]
    left = [shape(f["geometry"]) for f in features_at_kill if f["properties"]["state"] != "done"]
    for x, y, z in again:
        tile = box(*TMS.bounds(x, y, z))
        assert any(tile.intersects(cell) for cell in left), (x, y, z)
    assert all(n <= 2 for n in upstream.hits.values())
    assert [p for p in root.rglob("*") if ".part" in p.name or p.name.startswith(".")] == []
    assert len(list(root.rglob("*.tif"))) == total


async def _cells(data_dir: Path, job_id: str) -> list[dict[str, Any]]:
    """The job's cells as stored (the service is down)."""
    from proxy.catalog.sqlite import open_catalog
    from proxy.jobs.views import cell_feature

    catalog = await open_catalog(data_dir / "catalog.sqlite")
    try:
        return [cell_feature(c) for c in await catalog.cells.of_job(job_id)]
    finally:
        await catalog.close()


@pytest.mark.slow
async def test_two_worker_processes_share_a_job_and_run_each_cell_once(
    aiohttp_server, renderer, tmp_path
):
    upstream = TileUpstream(renderer)
    upstream.delay = 0.01
    served = await aiohttp_server(upstream.app, host="127.0.0.1")
    url = str(served.make_url("")).rstrip("/") + "/t/{z}/{x}/{y}.png"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_serve(data_dir, port, workers=2)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_healthy(session, base)
            body = {"type": "xyz", "name": "gt", "url": url}
            async with session.post(f"{base}/servers", json=body, headers=HEADERS) as resp:
                server_id = (await resp.json())["id"]
            body = {"server_id": server_id, "name": "two", "aois": AOI, "method": "download",
                    "resolution": 2.0, "max_cell_pixels": 256}  # fmt: skip
            async with session.post(f"{base}/imports", json=body, headers=HEADERS) as resp:
                assert resp.status == 202, await resp.text()
                job_id = (await resp.json())["job"]["id"]
            for _ in range(1200):
                job = await get_json(session, f"{base}/jobs/{job_id}")
                if job["state"] in ("done", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.1)
            geojson = await get_json(session, f"{base}/jobs/{job_id}/cells.geojson")
        finally:
            proc.terminate()
            await proc.wait()
    assert job["state"] == "done", job
    assert all(f["properties"]["attempt"] == 1 for f in geojson["features"])  # claimed once
    assert len(list((data_dir / "outputs").rglob("*.tif"))) == job["cells_total"]
