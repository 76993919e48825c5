"""Streaming image reads through the service's API against their limit and against GDAL.

Run: python -m benchmarks.bench_reads [--repeat N] [--upstream process|thread]

One run, one fake XYZ upstream on loopback (a child process by default; ``--upstream
thread`` puts it in a thread of this process, as the first sessions did, where it competes
with the service for the GIL) answering every tile after
50 ms with one of a few pre-encoded 256 px JPEG tiles of the ground truth, each made
distinct bytes by a comment naming the tile (a cold read decodes all of them). An image at
native zoom 15 is imported; a 2048 x 2048 window that is not tile-aligned needs 9 x 9 = 81
tiles. Measured (medians of ``--repeat``):

- cold reads (tile cache emptied before each) with the server's ``max_concurrency`` 16
  and 81 (the server's cap is the only one: a read's own is ``max_read_requests``);
- the warm read (every tile cached), against the in-process decode + mosaic of the same
  81 tiles (``SourceReader`` over a dict: no network, no cache, no encode), timed once
  after every timed cold and warm read so that it sees the same load (median of those);
- GDAL's WMS (TMS) driver reading the same window from the same upstream, with its
  default ``MaxConnections`` and with 16: the anchor;
- the limit ``ceil(81 / C) * 50 ms + decode`` (decode: the in-process row);
- the 81 tiles fetched at once by a bare aiohttp client in this process: the fake
  upstream's own serving and loopback beyond the 50 ms, which the limit leaves out;
- ``/health`` latencies while 8 cold reads of disjoint windows run (p50, p99, max);
- the peak RSS of a fresh service before and after a cold 4096 x 4096 read (``--rss``, run
  as a subprocess).

The service is ``imagery-proxy serve`` in a process of its own (uvloop when the extra
``speed`` is installed), as a detector reading windows is never in the service's process;
``--service inline`` runs it on this process's loop beside the client, as rounds 1-4 did.
Its data folder (catalog, tile cache) is in the working directory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import rasterio
from rasterio.transform import Affine

from proxy.workers import use_uvloop
from streaming import grid
from streaming.mosaic import Grid
from streaming.reader import ReadLimits, SourceReader
from tests.groundtruth import write_ground_truth
from tests.upstreams.render import GroundTruthRenderer

from .reads_service import API_KEY, Service
from .reads_upstream import (
    COLS,
    RES,
    ROWS,
    STEP,
    WINDOW,
    ZOOM,
    PoolTiles,
    TileServer,
    gdal_read,
    gdal_xml,
    image_aoi,
    tile_pool,
)

LATENCY, BIG = 0.05, 4096
DECODE = "in-process decode + mosaic of the 81 tiles (no network, no encode)"
WARM = "warm read (81 tiles cached), NPY body"
RAW = "raw fetch of 81 tiles at once (aiohttp client here, no cache, no decode)"


def ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


class Bench:
    """The service and its HTTP client over one upstream; each method measures one thing."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        upstream: TileServer,
        repeat: int,
        reference: Callable[[], Awaitable[object]] | None = None,
    ):
        self.http, self.base, self.upstream, self.repeat = http, base, upstream, repeat
        # The in-process decode + mosaic, timed once after every timed read, so the reference
        # sees the same load as the reads it is compared with (it moved 2-4x between runs).
        self.reference, self.decode_samples = reference, list[float]()

    async def sample_reference(self) -> None:
        if self.reference is not None:
            start = time.perf_counter()
            await self.reference()
            self.decode_samples.append(time.perf_counter() - start)

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(method, self.base + path, **kw) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.content_type == "application/json" else None

    async def read(self, image: dict[str, Any], k: int = 0, size: int = WINDOW) -> int:
        """Window ``k`` of the image as NPY (156 px past a tile edge: 9 x 9 tiles).

        The body is streamed and dropped, so the client holds none of it.
        """
        url = f"{self.base}/images/{image['id']}/window/{k % COLS * STEP},{k // COLS * STEP}"
        async with self.http.get(f"{url},{size},{size}.npy") as resp:
            assert resp.status == 200, await resp.text()
            async for _ in resp.content.iter_chunked(1 << 20):
                pass
            return int(resp.headers["X-Upstream-Requests"])

    async def raw_fetch(self) -> None:
        """The 81 tiles fetched at once by a bare client: what the upstream and loopback
        take beyond the 50 ms (the limit counts only the latency)."""

        async def one(k: int) -> None:
            url = self.upstream.template().format(z=ZOOM, x=1000 + k % 9, y=2000 + k // 9)
            async with self.http.get(url) as resp:
                await resp.read()

        await asyncio.gather(*(one(k) for k in range(81)))

    async def image_over(self, concurrency: int, aoi: dict[str, Any]) -> dict[str, Any]:
        """A server capped at ``concurrency`` and an image over ``aoi`` at zoom-15 pixels."""
        server = {
            "type": "xyz",
            "name": f"c{concurrency}",
            "url": self.upstream.template(),
            "max_zoom": ZOOM,
            "max_concurrency": concurrency,
        }
        created = await self.call("POST", "/servers", json=server)
        lat = (aoi["coordinates"][0][0][1] + aoi["coordinates"][0][2][1]) / 2
        body = {"server_id": created["id"], "name": "b", "aois": aoi}
        body["resolution"] = RES * math.cos(math.radians(lat))  # the plan's own rule
        return dict(await self.call("POST", "/imports", json=body))

    async def timed(
        self, run: Callable[[], Awaitable[object]], reference: bool = False
    ) -> list[float]:
        samples = []
        for _ in range(self.repeat):
            start = time.perf_counter()
            await run()
            samples.append(time.perf_counter() - start)
            if reference:
                await self.sample_reference()
        return samples

    async def cold(self, image: dict[str, Any]) -> float:
        """Median of cold reads, the cache emptied before each; all 81 tiles fetched."""

        async def run() -> None:
            await self.call("DELETE", f"/servers/{image['server_id']}/cache")
            self.upstream.reset()
            start = time.perf_counter()
            requests = await self.read(image)
            samples.append(time.perf_counter() - start)
            assert requests == self.upstream.hits == 81, (requests, self.upstream.hits)
            await self.sample_reference()

        samples: list[float] = []
        await self.timed(run)
        return ms(samples)

    async def health_during_cold_reads(self, image: dict[str, Any]) -> list[float]:
        """/health latencies, sorted, while 8 cold reads of disjoint windows run."""
        await self.call("DELETE", f"/servers/{image['server_id']}/cache")
        reads = asyncio.gather(*(self.read(image, k) for k in range(COLS * ROWS)))
        health = []
        while not reads.done():
            start = time.perf_counter()
            async with self.http.get(self.base + "/health") as resp:
                await resp.read()
            health.append(time.perf_counter() - start)
            await asyncio.sleep(0.005)
        await reads
        return sorted(health)


def in_process(pool: list[bytes], window: Grid, executor: ThreadPoolExecutor) -> SourceReader:
    """A reader of the window's 81 tiles in process: decode + mosaic, no network, cache, encode.

    ``PoolTiles`` offers no memory of decoded tiles: every read decodes all 81.
    """
    return SourceReader(PoolTiles(pool), executor, ReadLimits(max_requests=1024))


async def bench(repeat: int, tmp: Path, process: bool, mode: str) -> dict[str, Any]:
    """Every measurement of the module's docstring, as table rows."""
    pool = tile_pool(GroundTruthRenderer(write_ground_truth(tmp / "gt.tif")))
    upstream = TileServer(pool, LATENCY, process)
    served = Service(tmp, mode)
    base = await served.start()
    rows: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    local = ThreadPoolExecutor(4)
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}, connector=connector) as http:
        b = Bench(http, base, upstream, repeat)
        aoi = image_aoi()
        images = {c: await b.image_over(c, aoi) for c in (16, 81)}
        window = Grid(grid.WEB_MERCATOR_CRS, Affine(*images[16]["transform"][:6]), WINDOW, WINDOW)
        reader = in_process(pool, window, local)
        await reader.read(window)  # warm-up
        b.reference = lambda: reader.read(window)
        for c, image in images.items():
            await b.read(image)  # warm-up: connections, imports
            rows[f"cold read, max_concurrency {c}, as shipped"] = await b.cold(image)
            rows[f"  upstream requests in flight at most (C={c})"] = upstream.peak
        upstream.reset()
        rows[WARM] = ms(await b.timed(lambda: b.read(images[16]), reference=True))
        assert upstream.hits == 0
        b.reference = None
        decode = statistics.median(b.decode_samples)
        rows[DECODE] = round(decode * 1000, 1)
        rows["  in-process samples (one after each timed cold and warm read)"] = len(
            b.decode_samples
        )
        upstream.reset()
        rows[RAW] = ms(await b.timed(b.raw_fetch))
        for c in (16, 81):
            rows[f"limit ceil(81/{c}) x 50 ms + decode"] = round(
                (math.ceil(81 / c) * LATENCY + decode) * 1000, 1
            )
        loop = asyncio.get_running_loop()
        for name, connections in (("default MaxConnections", None), ("MaxConnections 16", 16)):
            xml = gdal_xml(upstream, connections)
            upstream.reset()
            gdal = await b.timed(lambda xml=xml: loop.run_in_executor(None, gdal_read, xml, window))
            rows[f"GDAL WMS read, {name}"] = ms(gdal)
            rows[f"  upstream requests per GDAL read, {name}"] = upstream.hits / repeat
        health = await b.health_during_cold_reads(images[16])
        p99 = health[min(len(health) - 1, math.ceil(0.99 * len(health)) - 1)]
        rows["/health during 8 cold reads (C=16, as shipped): samples"] = len(health)
        rows["/health p50 / p99 / max (ms)"] = " / ".join(
            str(round(v * 1000, 1)) for v in (statistics.median(health), p99, health[-1])
        )
    await served.stop()
    upstream.close()
    local.shutdown()
    return rows


async def peak_rss(tmp: Path, process: bool, mode: str) -> dict[str, Any]:
    """Peak RSS of the service before and after one cold 4096 x 4096 read (17 x 17 tiles).

    Run in a fresh process (``--rss``); the kernel's high-water mark is reset after the
    setup and one small read (imports, connections, threads all warm), so the peak is the
    read's alone (Linux: ``/proc/PID/clear_refs``).
    """
    pool = tile_pool(GroundTruthRenderer(write_ground_truth(tmp / "gt.tif")))
    upstream = TileServer(pool, LATENCY, process)
    served = Service(tmp, mode)
    base = await served.start()
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        b = Bench(http, base, upstream, 1)
        image = await b.image_over(16, image_aoi())
        await b.read(image, 0, 256)
        before = status_mb(served.pid, "VmRSS")
        Path(f"/proc/{served.pid}/clear_refs").write_text("5")  # VmHWM := the current RSS
        await b.read(image, 1, BIG)
        peak = status_mb(served.pid, "VmHWM")
    await served.stop()
    upstream.close()
    return {
        "RSS before / peak during a cold 4096x4096 NPY read, fresh service (MB)": (
            f"{before:.0f} / {peak:.0f} (+{peak - before:.0f})"
        )
    }


def status_mb(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def ratios(rows: dict[str, Any]) -> dict[str, float]:
    """The ratios the issue's targets are stated in."""

    def r(a: str, b: str) -> float:
        return round(float(rows[a]) / float(rows[b]), 2)

    decode = DECODE
    out = {}
    for c in (16, 81):
        limit = f"limit ceil(81/{c}) x 50 ms + decode"
        out[f"cold / limit, C={c}, as shipped"] = r(
            f"cold read, max_concurrency {c}, as shipped", limit
        )
        out[f"GDAL default / cold, C={c}, as shipped"] = r(
            "GDAL WMS read, default MaxConnections", f"cold read, max_concurrency {c}, as shipped"
        )
    out["warm / in-process decode + mosaic"] = r(WARM, decode)
    floor = float(rows[RAW]) + float(rows[decode])
    out["cold / (raw fetch + decode), C=81, as shipped"] = round(
        float(rows["cold read, max_concurrency 81, as shipped"]) / floor, 2
    )
    return out


def main(repeat: int, rss: bool, upstream: str, mode: str) -> None:
    load = os.getloadavg()
    process = upstream == "process"
    uvloop = use_uvloop()  # the loop `serve` runs on (when the extra `speed` is installed)
    # In the working directory, as the service's default data folder (``data/``) is: on
    # these machines a file made in /tmp costs 10x more (0.41 ms a create + rename against
    # 0.036 ms, same ext4 device), and a cold read's 81 cache writes share its cores.
    with tempfile.TemporaryDirectory(prefix=".bench-reads-", dir=".") as tmp:
        if rss:
            work = peak_rss(Path(tmp), process, mode)
        else:
            work = bench(repeat, Path(tmp), process, mode)
        rows = asyncio.run(work)
    if not rss:
        rows.update(ratios(rows))
        print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"# {platform.platform()}, {rasterio.__gdal_version__ = }")
        print(f"# load average before: {' '.join(f'{v:.2f}' for v in load)}")
        loop = "uvloop" if uvloop else "asyncio"
        print(f"# fake upstream in its own {upstream}; service: {mode}; event loop: {loop}")
    for key, value in rows.items():
        print(f"| {key} | {value} |")
    if not rss:  # the peak RSS in a fresh process, then the load after everything
        command = [sys.executable, "-m", "benchmarks.bench_reads", "--rss", "--upstream", upstream]
        subprocess.run([*command, "--service", mode], check=True)
        print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss", action="store_true", help="only the peak RSS of a 4096² read")
    parser.add_argument(
        "--upstream",
        choices=("process", "thread"),
        default="process",
        help="where the fake upstream runs: a child process (as a remote server would), "
        "or a thread of this process (the first sessions' figures; it takes the GIL)",
    )
    parser.add_argument(
        "--service",
        choices=("process", "inline"),
        default="process",
        help="the service as `imagery-proxy serve` in its own process, or an app on this "
        "process's loop, beside the client (the figures before round 5)",
    )
    args = parser.parse_args()
    main(args.repeat, args.rss, args.upstream, args.service)
