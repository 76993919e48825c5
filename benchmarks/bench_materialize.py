"""One materialized cell (the materialize kind's ``run_cell``) against its limit and GDAL.

Run: python -m benchmarks.bench_materialize [--size 4096] [--compression deflate]

One run, one fake XYZ upstream on loopback (its own thread, ``benchmarks.reads_upstream``)
answering every tile after 50 ms with one of a few pre-encoded 256 px JPEG tiles. A server
with ``max_concurrency`` C = 16 and an image at native zoom 15 are made through the API;
its first cell, ``--size`` px square and not tile-aligned (17 x 17 = 289 tiles at 4096),
is written by ``MaterializeKind.run_cell`` (no runner). Measured:

- the cell's wall time, its upstream requests and the cell's bytes;
- "encode": the same window written in process from the same tiles with no latency
  (``streaming.cog.write_cog`` over the pool: decode, mosaic, stage, overviews, COG copy);
- the limit ``ceil(tiles / C) x 50 ms + encode``;
- ``gdal_translate`` from GDAL's WMS (TMS) driver to a COG with the same compression, same
  window, same upstream, default ``MaxConnections`` and 16;
- the peak RSS of a fresh process during one cell of 4096² and one of 16384² (``--rss N``,
  a subprocess each: the high-water mark is reset after the setup).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import rasterio
from pyproj import Transformer

from proxy.jobs.kinds import CellWork
from proxy.jobs.materialize import MaterializeKind, image_grid
from proxy.keys import SERVICES
from proxy.services import Services
from streaming.aoi import parse_aois
from streaming.cog import CogOptions, CogWindow, write_cog
from streaming.image import StreamingImage
from streaming.reader import ReadLimits
from tests.groundtruth import CENTER_X, CENTER_Y, write_ground_truth
from tests.upstreams.render import GroundTruthRenderer

from .bench_reads import API_KEY, service, status_mb
from .reads_upstream import HALF, RES, ZOOM, PoolTiles, TileServer, gdal_xml, tile_pool

LATENCY, C = 0.05, 16


def square_aoi(size: int) -> dict[str, Any]:
    """A lon/lat rectangle whose image is a bit over ``size`` px a side at zoom 15.

    Its corner lies 100 px before a tile edge, so a cell is not tile-aligned.
    """
    col0 = math.floor((CENTER_X + HALF) / RES) // 256 * 256 - 100
    row0 = math.floor((HALF - CENTER_Y) / RES) // 256 * 256 - 100
    left, top = -HALF + col0 * RES, HALF - row0 * RES
    right, bottom = left + (size + 64) * RES, top - (size + 64) * RES
    (w, e), (s, n) = Transformer.from_crs(3857, 4326, always_xy=True).transform(
        [left, right], [bottom, top]
    )
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}


async def setup(tmp: Path, size: int) -> tuple[Any, ...]:
    pool = tile_pool(GroundTruthRenderer(write_ground_truth(tmp / "gt.tif")))
    upstream = TileServer(pool, LATENCY)
    runner, base = await service(tmp)
    services: Services = runner.app[SERVICES]
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        server = {"type": "xyz", "name": "bench", "url": upstream.template(), "max_zoom": ZOOM,
                  "max_concurrency": C}  # fmt: skip
        async with http.post(base + "/servers", json=server) as resp:
            server_id = (await resp.json())["id"]
        aoi = square_aoi(size)
        lat = (aoi["coordinates"][0][0][1] + aoi["coordinates"][0][2][1]) / 2
        body = {"server_id": server_id, "name": "bench", "aois": aoi,
                "resolution": RES * math.cos(math.radians(lat))}  # fmt: skip
        async with http.post(base + "/imports", json=body) as resp:
            image = await resp.json()
            assert resp.status == 201, image
    image["base"] = base
    return pool, upstream, runner, services, image


async def clear_cache(image: dict[str, Any]) -> None:
    """Empty the server's tile cache (after the warm-up cell), as the API does."""
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        url = f"{image['base']}/servers/{image['server_id']}/cache"
        async with http.delete(url) as resp:
            assert resp.status < 300, await resp.text()


async def one_cell(
    services: Services, image: dict[str, Any], size: int, compression: str, job: str
) -> tuple[float, Any, dict[str, Any]]:
    kind = MaterializeKind()
    params = {"image_id": image["id"], "max_cell_pixels": size, "compression": compression}
    cells = await kind.plan(services, params)
    cell = cells[0]
    assert cell.spec["width"] == cell.spec["height"] == size, cell.spec
    work = CellWork(job_id=job, kind="materialize", params=params, server_id=image["server_id"],
                    index=0, attempt=1, spec=cell.spec)  # fmt: skip
    start = time.perf_counter()
    done = await kind.run_cell(services, work, lambda n: None)
    return time.perf_counter() - start, done, cell.spec


async def encode_only(
    pool: list[bytes], services: Services, image_id: str, size: int, compression: str, tmp: Path
) -> float:
    """The same window written in process from the tile pool: no network, no latency."""
    record = await services.catalog.images.get(image_id)
    assert record is not None
    with ThreadPoolExecutor(4) as executor:
        image = StreamingImage(PoolTiles(pool), image_grid(record), parse_aois(record.aois),
                               executor, ReadLimits(max_requests=1024))  # fmt: skip
        start = time.perf_counter()
        await write_cog(image, CogWindow(0, 0, size, size), tmp / "encode.tif",
                        CogOptions(compression=compression), executor)  # fmt: skip
        return time.perf_counter() - start


def gdal_translate(
    xml: str, image: dict[str, Any], size: int, compression: str, out: Path
) -> float:
    """Seconds of ``gdal_translate -of COG`` of the cell's window from GDAL's WMS driver."""
    src = out.with_suffix(".xml")
    src.write_text(xml)
    with rasterio.open(src) as wms:
        col, row = ~wms.transform * (image["transform"][2], image["transform"][5])
    cmd = ["gdal_translate", "-q", "-of", "COG", "-co", f"COMPRESS={compression.upper()}",
           "-co", "BLOCKSIZE=512", "-srcwin", str(round(col)), str(round(row)), str(size),
           str(size), str(src), str(out)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


async def bench(size: int, compression: str, tmp: Path) -> dict[str, Any]:
    pool, upstream, runner, services, image = await setup(tmp, size)
    rows: dict[str, Any] = {}
    await one_cell(services, image, 512, compression, "warmup0")  # connections, imports
    await clear_cache(image)
    upstream.reset()
    seconds, done, spec = await one_cell(services, image, size, compression, "benchjob1")
    tiles = upstream.hits
    rows[f"cell {size}² ({compression}), run_cell wall time (s)"] = round(seconds, 2)
    rows["  upstream requests (fake server's count / the cell's own)"] = (
        f"{tiles} / {done.upstream_requests}"
    )
    rows["  upstream requests in flight at most"] = upstream.peak
    rows["  cell bytes (MB)"] = round(done.bytes_written / 1e6, 1)
    encode = await encode_only(pool, services, image["id"], size, compression, tmp)
    rows["encode: same window in process, no latency (s)"] = round(encode, 2)
    limit = math.ceil(tiles / C) * LATENCY + encode
    rows[f"limit ceil({tiles}/{C}) x 50 ms + encode (s)"] = round(limit, 2)
    loop = asyncio.get_running_loop()
    for name, connections in (("default MaxConnections", None), ("MaxConnections 16", 16)):
        upstream.reset()
        xml = gdal_xml(upstream, connections)
        out = tmp / f"gdal_{connections}.tif"
        gdal = await loop.run_in_executor(None, gdal_translate, xml, image, size, compression, out)
        rows[f"gdal_translate WMS -> COG, {name} (s)"] = round(gdal, 2)
        rows[f"  its upstream requests, {name}"] = upstream.hits
    gdal_default = rows["gdal_translate WMS -> COG, default MaxConnections (s)"]
    rows["ratio cell / gdal_translate (default) [target <= 0.5]"] = round(seconds / gdal_default, 2)
    rows["ratio cell / limit [target <= 1.3]"] = round(seconds / limit, 2)
    await runner.cleanup()
    upstream.close()
    return rows


async def peak_rss(size: int, tmp: Path) -> dict[str, Any]:
    """Peak RSS of this process during one cell of ``size``² (after a small warm-up cell)."""
    pool, upstream, runner, services, image = await setup(tmp, size)
    await one_cell(services, image, 512, "deflate", "warmup0")
    await clear_cache(image)
    upstream.reset()
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    seconds, done, _ = await one_cell(services, image, size, "deflate", "rssjob01")
    peak = status_mb("VmHWM")
    await runner.cleanup()
    upstream.close()
    return {
        f"RSS before / peak during one {size}² cell, fresh process (MB)": (
            f"{before:.0f} / {peak:.0f} (+{peak - before:.0f}); {seconds:.1f} s, "
            f"{upstream.hits} tiles, {done.bytes_written / 1e6:.0f} MB"
        )
    }


def main(size: int, compression: str, rss: int | None) -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if rss:
            rows = asyncio.run(peak_rss(rss, Path(tmp)))
        else:
            rows = asyncio.run(bench(size, compression, Path(tmp)))
    if not rss:
        print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"# {platform.platform()}, {rasterio.__gdal_version__ = }")
        print(f"# load average before: {' '.join(f'{v:.2f}' for v in load)}")
    for key, value in rows.items():
        print(f"| {key} | {value} |")
    if not rss:
        for n in (4096, 16384):
            subprocess.run([sys.executable, "-m", "benchmarks.bench_materialize", "--rss", str(n)],
                           check=True)  # fmt: skip
        print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--compression", default="deflate")
    parser.add_argument("--rss", type=int, default=None, help="only the peak RSS of one cell")
    args = parser.parse_args()
    main(args.size, args.compression, args.rss)
