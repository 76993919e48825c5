"""The materialize kind when things go wrong: upstream errors, quota, disk full, cancel, resume."""

from __future__ import annotations

import asyncio
import errno
import re

import pytest
from aiohttp import web

import streaming.cog
from proxy.config import load_settings
from proxy.errors import InvalidInput
from proxy.images.errors import ImageNotFound
from proxy.jobs.kinds import CellFailed
from proxy.jobs.materialize import MaterializeKind
from proxy.jobs.outputs import outputs_root
from streaming.errors import ResolutionTooHigh, SourceQuotaExceeded
from tests.conftest import API_KEY
from tests.proxy.job_helpers import import_image, run_all, services_of, work
from tests.upstreams.xyz import PATHS, xyz_app

JOB = "job0123456789"
FAILING = web.AppKey("failing", set)
DELAY = web.AppKey("delay", list)  # [seconds] before each answer
TILE = re.compile(r"/a/tiles/(\d+)/(\d+)/(\d+)\.png")


@pytest.fixture
def settings(tmp_path):
    """No retries and no circuit breaker: one 500 fails its cell at once, and only it."""
    return load_settings(
        env={},
        data_dir=tmp_path / "data",
        api_keys=(API_KEY,),
        allowed_networks=("127.0.0.0/8",),
        executor_workers=2,
        upstream_retries=0,
        breaker_threshold=1000,
    )


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    """The fake XYZ server; tiles whose x is in ``app[FAILING]`` answer 500, slowly when
    ``app[DELAY]`` holds a delay."""

    @web.middleware
    async def failing(request, handler):
        match = TILE.fullmatch(request.path)
        await asyncio.sleep(request.app[DELAY][0])
        if match and int(match.group(2)) in request.app[FAILING]:
            raise web.HTTPInternalServerError(text="boom")
        return await handler(request)

    app = xyz_app(renderer)
    app.middlewares.append(failing)
    app[FAILING] = set()
    app[DELAY] = [0.0]
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


async def planned(api, base, **params):
    services = services_of(api)
    image = await import_image(api, base)
    params = {"image_id": image["id"], "max_cell_pixels": 256, **params}
    params["server_id"] = image["server_id"]  # for the tests; the kind reads the image's
    return services, params, await MaterializeKind().plan(services, params)


def folder_of(services):
    return outputs_root(services.settings) / f"gt-{JOB[:8]}"


async def test_a_cell_whose_area_answers_500_fails_with_the_error_and_the_others_complete(
    api, upstream
):
    app, base = upstream
    services, params, cells = await planned(api, base)
    kind = MaterializeKind()
    first = await run_all(kind, services, cells[:1], params, JOB)  # learn the tiles of cell 0
    xs = {int(TILE.fullmatch(p).group(2)) for p in app[PATHS] if TILE.fullmatch(p)}
    app[FAILING].add(max(xs))
    (folder_of(services) / "gt_0.tif").unlink()
    resp = await api.delete("/servers/" + params["server_id"] + "/cache")
    assert resp.status < 300, await resp.text()
    with pytest.raises(CellFailed, match="upstream_unavailable") as failed:
        await kind.run_cell(services, work(cells[0], params, JOB), lambda n: None)
    assert "500" in str(failed.value)
    far = [c for c in cells if c.spec["col_off"] >= 512]  # tiles well east of cell 0
    assert far
    await run_all(kind, services, far, params, JOB)
    names = sorted(p.name for p in folder_of(services).iterdir())
    assert names == sorted(c.spec["file"] for c in far), "no partial file of the failed cell"
    assert first[0].bytes_written > 0


async def test_a_spent_quota_propagates_instead_of_failing_the_cell(api, upstream, monkeypatch):
    _, base = upstream
    services, params, cells = await planned(api, base)
    real_get = services.sources.get

    class Spent:
        """The server's source once its quota is spent: nothing is sent."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def fetch_tile(self, tile):
            raise SourceQuotaExceeded("daily quota spent", resets_at=2e9)

    async def spent(record):
        return Spent(await real_get(record))

    monkeypatch.setattr(services.sources, "get", spent)
    with pytest.raises(SourceQuotaExceeded):
        await MaterializeKind().run_cell(services, work(cells[0], params, JOB), lambda n: None)
    assert list(folder_of(services).iterdir()) == []


@pytest.mark.parametrize("step", ["_write_block", "_copy_cog"])
async def test_a_full_disk_fails_the_cell_clearly_and_leaves_no_file(
    api, upstream, monkeypatch, step
):
    _, base = upstream
    services, params, cells = await planned(api, base)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streaming.cog, step, no_space)
    with pytest.raises(CellFailed, match=r"^disk full: cannot write gt_0\.tif"):
        await MaterializeKind().run_cell(services, work(cells[0], params, JOB), lambda n: None)
    assert list(folder_of(services).iterdir()) == []


async def test_a_cancelled_cell_leaves_no_temporary(api, upstream):
    app, base = upstream
    services, params, cells = await planned(api, base, max_cell_pixels=1024)
    app[DELAY][0] = 0.2
    task = asyncio.ensure_future(
        MaterializeKind(block=256).run_cell(services, work(cells[0], params, JOB), lambda n: None)
    )
    while not [p for p in app[PATHS] if TILE.fullmatch(p)]:
        await asyncio.sleep(0.01)
    folder = folder_of(services)
    assert [p.name for p in folder.iterdir()] == [".gt_0.tif.1.part.raw"]  # the stage, begun
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(folder.iterdir()) == []


async def test_a_new_attempt_removes_the_temporaries_of_earlier_ones(api, upstream):
    _, base = upstream
    services, params, cells = await planned(api, base)
    folder = folder_of(services)
    folder.mkdir(parents=True)
    stale = [".gt_0.tif.1.part", ".gt_0.tif.1.part.raw", ".gt_0.tif.1.part.ovr.tmp"]
    for name in stale:
        (folder / name).write_bytes(b"partial")
    (folder / ".gt_1.tif.4.part").write_bytes(b"another cell's")
    kind = MaterializeKind()
    await kind.run_cell(services, work(cells[0], params, JOB, attempt=2), lambda n: None)
    assert sorted(p.name for p in folder.iterdir()) == [".gt_1.tif.4.part", "gt_0.tif"]
    await kind.finish(services, JOB, params)  # the job's end sweeps the rest
    assert not [p for p in folder.iterdir() if ".part" in p.name]


async def test_the_guard_refuses_before_any_upstream_request(api, upstream):
    app, base = upstream
    services = services_of(api)
    image = await import_image(api, base)
    with pytest.raises(ResolutionTooHigh) as refused:
        await MaterializeKind().plan(services, {"image_id": image["id"], "detector_resolution": 30})
    assert refused.value.extra["image_id"] == image["id"] and "/duplicate" in refused.value.hint
    assert [p for p in app[PATHS] if TILE.fullmatch(p)] == []
    fine = {"image_id": image["id"], "detector_resolution": 4}
    assert await MaterializeKind().plan(services, fine)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"compression": "gif"}, InvalidInput),
        ({"max_cell_pixels": 10}, InvalidInput),
        ({"max_cell_pixels": "512"}, InvalidInput),
        ({"detector_resolution": -1}, InvalidInput),
        ({"image_id": "nope"}, ImageNotFound),
    ],
)
async def test_bad_parameters_are_refused_when_planning(api, upstream, params, error):
    services = services_of(api)
    image = await import_image(api, upstream[1])
    with pytest.raises(error):
        await MaterializeKind().plan(services, {"image_id": image["id"], **params})


async def test_a_cell_of_an_image_deleted_since_the_plan_fails_with_the_reason(api, upstream):
    _, base = upstream
    services, params, cells = await planned(api, base)
    resp = await api.delete(f"/images/{params['image_id']}")
    assert resp.status < 300, await resp.text()
    with pytest.raises(CellFailed, match="not_found"):
        await MaterializeKind().run_cell(services, work(cells[0], params, JOB), lambda n: None)
