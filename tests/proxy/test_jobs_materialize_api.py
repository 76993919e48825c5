"""Materialize jobs through the HTTP API: POST /images/{id}/materialize and download
imports, run by the service's runner into COGs and a STAC Collection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import rasterio

from proxy.keys import JOBS, SERVICES
from tests.proxy.image_helpers import AOI
from tests.proxy.tile_helpers import add_server
from tests.upstreams.xyz import xyz_app

ENDED = ("done", "failed", "cancelled")


@pytest.fixture
async def server_id(api, aiohttp_server, renderer) -> str:
    served = await aiohttp_server(xyz_app(renderer), host="127.0.0.1")
    url = str(served.make_url("")).rstrip("/") + "/a/tiles/{z}/{x}/{y}.png"
    return await add_server(api, {"type": "xyz", "url": url, "resolution": 4.0})


async def wait_done(api, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = await (await api.get(f"/jobs/{job_id}")).json()
        if job["state"] in ENDED:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(job)


async def test_materialize_an_image_into_cogs_listed_by_a_stac_collection(api, server_id):
    resp = await api.post("/imports", json={"server_id": server_id, "name": "Field A", "aois": AOI})
    image = await resp.json()
    resp = await api.post(f"/images/{image['id']}/materialize", json={"max_cell_pixels": 256})
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert resp.headers["Location"] == f"/jobs/{job['id']}"
    assert job["kind"] == "materialize" and job["image_id"] == image["id"]
    assert job["params"] == {
        "image_id": image["id"],
        "max_cell_pixels": 256,
        "compression": "deflate",
    }
    assert job["cells_total"] >= 2 and job["state"] in ("pending", "running")
    folder = job["outputs"]["folder"]
    assert folder == f"Field_A-{job['id'][:8]}" and job["outputs"]["stac"] is None

    job = await wait_done(api, job["id"])
    assert job["state"] == "done" and job["cells"]["done"] == job["cells_total"]
    assert job["outputs"]["stac"] == f"{folder}/collection.json"
    assert job["bytes_written"] > 0 and job["upstream_requests"] > 0
    root = api.server.app[SERVICES]
    outputs = root.settings.outputs_root / folder
    assert (outputs / "collection.json").exists()
    cells = (await (await api.get(f"/jobs/{job['id']}/cells.geojson")).json())["features"]
    for feature in cells:
        path = root.settings.outputs_root / feature["properties"]["output"]
        with rasterio.open(path) as cog:
            assert cog.crs.to_epsg() == 3857 and cog.count >= 3
        assert feature["properties"]["bytes"] == path.stat().st_size


async def test_materialize_refusals(api, server_id):
    resp = await api.post("/imports", json={"server_id": server_id, "name": "f", "aois": AOI})
    image_id = (await resp.json())["id"]
    resp = await api.post(f"/images/{image_id}/materialize", json={"detector_resolution": 100})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "resolution_too_high"
    resp = await api.post(f"/images/{image_id}/materialize", json={"compression": "gif"})
    assert resp.status == 422
    resp = await api.post("/images/nope/materialize")
    assert resp.status == 404
    assert (await (await api.get("/jobs")).json()) == {"jobs": []}  # nothing was made


async def test_a_download_import_answers_the_image_and_its_job(api, server_id):
    body = {"server_id": server_id, "name": "d", "aois": AOI, "method": "download",
            "compression": "zstd", "max_cell_pixels": 512}  # fmt: skip
    resp = await api.post("/imports", json=body)
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert set(answer) == {"image", "job"}
    assert answer["job"]["image_id"] == answer["image"]["id"]
    assert answer["job"]["params"]["compression"] == "zstd"
    assert (await api.get(f"/images/{answer['image']['id']}")).status == 200
    job = await wait_done(api, answer["job"]["id"])
    assert job["state"] == "done"

    body["detector_resolution"] = 1  # not a field of imports
    assert (await api.post("/imports", json=body)).status == 422


async def test_a_server_quota_pauses_a_materialization_which_resumes_when_it_resets(
    api, aiohttp_server, renderer
):
    served = await aiohttp_server(xyz_app(renderer), host="127.0.0.1")
    url = str(served.make_url("")).rstrip("/") + "/a/tiles/{z}/{x}/{y}.png"
    quota = {"requests": 6, "period": "rolling", "window_seconds": 1, "reserve": 0}
    server_id = await add_server(
        api, {"type": "xyz", "url": url, "resolution": 4.0, "quota": quota}
    )
    resp = await api.post("/imports", json={"server_id": server_id, "name": "q", "aois": AOI})
    image_id = (await resp.json())["id"]
    resp = await api.post(f"/images/{image_id}/materialize", json={"max_cell_pixels": 256})
    job_id = (await resp.json())["id"]
    jobs = api.server.app[JOBS]
    paused = None
    for _ in range(600):
        record = await jobs.get(job_id)
        if record.state == "paused":
            paused = jobs.view(record)["paused"]
        if record.state in ENDED:
            break
        await asyncio.sleep(0.01)
    assert record.state == "done", jobs.view(record)
    assert paused is not None and paused["reason"] == "quota", "never paused"
    cells = await api.server.app[SERVICES].catalog.cells.of_job(job_id)
    assert any(c.attempt > 1 for c in cells)  # given back at the pause, run again after it


async def test_a_seed_job_through_the_api_fills_the_tile_cache(api, server_id):
    body = {"aois": AOI, "min_zoom": 13, "max_zoom": 15}
    resp = await api.post(f"/servers/{server_id}/seed", json=body)
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert job["kind"] == "seed" and job["server_id"] == server_id
    job = await wait_done(api, job["id"])
    assert job["state"] == "done", job
    assert job["upstream_requests"] > 0
    cells = (await (await api.get(f"/jobs/{job['id']}/cells.geojson")).json())["features"]
    assert {c["properties"]["state"] for c in cells} == {"done"}
    seeded = sum(c["properties"]["bytes"] > 0 for c in cells)
    assert seeded == len(cells)
    # Every tile the seed fetched is now a cache hit: a second seed asks the upstream nothing.
    resp = await api.post(f"/servers/{server_id}/seed", json=body)
    again = await wait_done(api, (await resp.json())["id"])
    assert again["state"] == "done" and again["upstream_requests"] == 0, again


async def test_a_materialize_request_answers_its_quota_share_and_can_require_it(
    api, aiohttp_server, renderer
):
    served = await aiohttp_server(xyz_app(renderer), host="127.0.0.1")
    url = str(served.make_url("")).rstrip("/") + "/a/tiles/{z}/{x}/{y}.png"
    quota = {"requests": 3, "period": "day"}
    server_id = await add_server(
        api, {"type": "xyz", "url": url, "resolution": 4.0, "quota": quota}
    )
    resp = await api.post("/imports/plan", json={"server_id": server_id, "name": "q", "aois": AOI})
    planned = await resp.json()
    resp = await api.post("/imports", json={"server_id": server_id, "name": "q", "aois": AOI})
    image_id = (await resp.json())["id"]

    body = {"max_cell_pixels": 256, "require_quota": True}
    resp = await api.post(f"/images/{image_id}/materialize", json=body)
    assert resp.status == 409, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "quota_insufficient"
    assert error["quota"]["requests"]["needed"] == planned["requests"] > 3
    assert (await (await api.get("/jobs")).json())["jobs"] == []  # nothing started

    resp = await api.post(f"/images/{image_id}/materialize", json={"max_cell_pixels": 256})
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    share = job["quota"]
    assert share["fits"] is False and share["requests"]["limit"] == 3
    assert share["requests"]["needed"] == planned["requests"]
    # Without require_quota it starts (and would pause at the limit): stop it here.
    assert (await api.post(f"/jobs/{job['id']}/cancel")).status == 200
    assert (await wait_done(api, job["id"]))["state"] == "cancelled"
