"""Single flight across the worker processes of ``imagery-proxy serve --workers 2``.

A real ``serve`` subprocess in front of loopback fakes that count requests and answer
slowly (so the workers' fetches overlap): a cold tile asked 200 times at once, over 200
connections spread by the kernel over both workers, reaches the upstream once; so does
a cold WMS metatile whose 16 tiles are asked for at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from proxy.metrics import render_multiprocess
from tests.groundtruth import assert_pixels_match, expected
from tests.proxy.test_metrics import sample
from tests.proxy.test_workers import free_port, workers_of
from tests.proxy.tile_helpers import WMQ, centre_tile, decode, tile_grid
from tests.upstreams.wms import REQUESTS, wms_app
from tests.upstreams.xyz import HITS, xyz_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
KEY = "workers-test-key"
P = "imagery_proxy_"
UPSTREAM_DELAY = 0.4  # s: long enough that both workers ask while the first fetch runs


def delayed(app: web.Application) -> web.Application:
    """``app`` answering every request after :data:`UPSTREAM_DELAY`."""

    @web.middleware
    async def delay(request: web.Request, handler):  # type: ignore[no-untyped-def]
        await asyncio.sleep(UPSTREAM_DELAY)
        return await handler(request)

    app.middlewares.append(delay)
    return app


class Cluster:
    """A running ``serve --workers 2`` and a client sending its API key."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, data: Path) -> None:
        self.proc = proc
        self.url = url
        self.data = data
        self.headers = {"X-API-Key": KEY}

    async def add_server(self, config: dict[str, str]) -> str:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            resp = await session.post(f"{self.url}/servers", json={"name": "w", **config})
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["id"])

    async def get_all(self, paths: list[str]) -> list[tuple[int, bytes]]:
        """Every path at once, each on its own connection (the kernel spreads them)."""
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(headers=self.headers, connector=connector) as session:

            async def one(path: str) -> tuple[int, bytes]:
                async with session.get(self.url + path) as resp:
                    return resp.status, await resp.read()

            return await asyncio.gather(*(one(p) for p in paths))

    def per_worker(self, tmp: Path) -> list[str]:
        """Each worker's own metrics (its counter file rendered alone)."""
        texts = []
        for pid in workers_of(self.proc.pid):
            folder = tmp / f"m{pid}"
            folder.mkdir()
            for path in (self.data / "metrics").glob(f"counter_{pid}.db"):
                shutil.copy(path, folder)
            texts.append(render_multiprocess(folder).decode())
        return texts


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    port = free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGERY_PROXY_DATA_DIR": str(data),
        "IMAGERY_PROXY_API_KEYS": KEY,
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IMAGERY_PROXY_EXECUTOR_WORKERS": "2",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "proxy.cli", "serve", "--port", str(port), "--workers", "2"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"X-API-Key": KEY}) as session:
            for _ in range(300):  # both workers up: their live gauges sum to 2
                try:
                    resp = await session.get(f"{url}/metrics")
                    if sample(await resp.text(), P + "workers") == 2:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("two workers never reported")
        yield Cluster(proc, url, data)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err, err.decode()


def both_answered(texts: list[str], sid: str) -> None:
    """Each worker answered some of the requests (hit, miss, or waited for a fetch)."""
    assert len(texts) == 2
    for text in texts:
        answered = sum(
            sample(text, f"{P}cache_{name}_total", server=sid)
            for name in ("hits", "misses", "single_flight_joins")
        )
        assert answered > 0, text


async def test_a_cold_tile_asked_200_times_over_two_workers_is_fetched_once(
    cluster, serve, renderer, tmp_path
):
    app = delayed(xyz_app(renderer))
    base = await serve(app)
    sid = await cluster.add_server({"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png"})
    t = centre_tile(14)
    before = len(app[HITS])
    answers = await cluster.get_all([f"/servers/{sid}/tiles/14/{t.x}/{t.y}"] * 200)
    assert {status for status, _ in answers} == {200}
    assert {body for _, body in answers} == {renderer.tile(WMQ, t.x, t.y, 14, 256, "png")}
    assert len(app[HITS]) - before == 1  # one upstream request for 200, over two processes
    texts = cluster.per_worker(tmp_path)
    both_answered(texts, sid)
    assert sum(sample(text, f"{P}cache_misses_total", server=sid) for text in texts) == 1


async def test_a_cold_metatile_asked_by_two_workers_is_one_getmap(
    cluster, serve, renderer, ground_truth, tmp_path
):
    app = delayed(wms_app(renderer, max_size=(2048, 2048)))
    base = await serve(app)
    sid = await cluster.add_server({"type": "wms", "url": base + "/wms", "crs": "EPSG:3857"})

    def getmaps() -> int:
        return sum(1 for r in app[REQUESTS] if r.get("REQUEST", "").lower() == "getmap")

    before = getmaps()
    t = centre_tile(15)
    x0, y0 = t.x // 4 * 4, t.y // 4 * 4
    block = [(x0 + i, y0 + j) for j in range(4) for i in range(4)]
    paths = [f"/servers/{sid}/tiles/15/{x}/{y}" for x, y in block] * 8  # 128 requests
    answers = await cluster.get_all(paths)
    assert {status for status, _ in answers} == {200}
    assert getmaps() - before == 1  # 16 tiles, two processes: one GetMap
    both_answered(cluster.per_worker(tmp_path), sid)
    centre = paths.index(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")
    for _, body in answers[centre :: len(block)]:  # the centre tile, from either worker
        assert_pixels_match(decode(body), expected(ground_truth, tile_grid(15, t.x, t.y)))
