"""The service's preview against GDAL's WMS driver on the same upstream, and each codec per call.

Run: python -m benchmarks.bench_reader [--repeat N] [--profile]

One run measures, side by side:
- a 512 px preview at 10 m/px (16 JPEG tiles of zoom 14) through the service's
  ``POST /servers/test?format=...`` (auto: JPEG here; png), and the same window read by
  rasterio from a GDAL WMS (TMS) description with MaxConnections 2 and 16, both from one
  static loopback tile server, at 0 ms and 50 ms of added latency per tile. Neither side
  caches tiles between calls (GDAL's dataset is opened per read, with no <Cache>).
- the in-memory read path (no network): decode, mosaic and resize of the same preview.
- each codec per call (benchmarks.bench_codecs).
``--profile`` prints a cProfile of the in-memory preview (decode, mosaic, resize, encode).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import platform
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import rasterio
from aiohttp import web
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

from proxy.app import create_app
from proxy.config import load_settings
from streaming import codecs, grid
from streaming.reader import SourceReader, preview_grid
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, write_ground_truth
from tests.upstreams.render import GroundTruthRenderer

from . import bench_codecs

ZOOM, SIZE, RESOLUTION = 14, 512, 10.0
HALF = 20037508.342789244
API_KEY = "bench-key"


class PreEncodedTiles:
    """A tile source answering from a dict of encoded tiles (no I/O)."""

    def __init__(self, renderer: GroundTruthRenderer, fmt: str) -> None:
        self.tms, self.min_zoom, self.max_zoom = grid.web_mercator_tms(), 0, ZOOM
        self.tiles: dict[TileIndex, bytes] = {}
        x, y, _ = self.tms.tile(CENTER_LON, CENTER_LAT, ZOOM)
        for dx in range(-3, 4):
            for dy in range(-3, 4):
                data = renderer.tile(self.tms, x + dx, y + dy, ZOOM, 256, fmt)
                if data is not None:
                    self.tiles[TileIndex(x + dx, y + dy, ZOOM)] = data
        self.content_type = f"image/{fmt}"

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        data = self.tiles.get(tile)
        return None if data is None else FetchedImage(data, self.content_type)


class TileServer:
    """A static tile server on loopback, in its own thread (GDAL's reads block the caller)."""

    def __init__(self, tiles: dict[TileIndex, bytes]) -> None:
        self.tiles, self.latency, self.hits = tiles, 0.0, 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/tiles/{z}/{x}/{y}.jpg", self._tile)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        self.loop.run_forever()

    async def _tile(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        key = TileIndex(*(int(request.match_info[k]) for k in ("x", "y", "z")))
        data = self.tiles.get(key)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/jpeg")

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/tiles/{{z}}/{{x}}/{{y}}.jpg"


def gdal_wms_xml(server: TileServer, connections: int) -> str:
    """A GDAL WMS (TMS) description of the tile server, zoom ``ZOOM`` at full resolution."""
    url = f"http://127.0.0.1:{server.port}/tiles/${{z}}/${{x}}/${{y}}.jpg"
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{url}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-HALF}</UpperLeftX><UpperLeftY>{HALF}</UpperLeftY>
    <LowerRightX>{HALF}</LowerRightX><LowerRightY>{-HALF}</LowerRightY>
    <TileLevel>{ZOOM}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount>
  <MaxConnections>{connections}</MaxConnections>
  <ZeroBlockHttpCodes>404</ZeroBlockHttpCodes>
</GDAL_WMS>"""


def gdal_read(xml: str) -> object:
    """The preview's window, read and resampled (bilinear) by GDAL: what a GDAL user would do."""
    out = preview_grid(CENTER_LAT, CENTER_LON, RESOLUTION, SIZE)
    left, top = out.transform @ (0, 0)
    right, bottom = out.transform @ (SIZE, SIZE)
    with rasterio.open(xml) as src:
        window = from_bounds(left, bottom, right, top, src.transform)
        return src.read(window=window, out_shape=(3, SIZE, SIZE), resampling=Resampling.bilinear)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    await call()  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def service_vs_gdal(tiles: dict[TileIndex, bytes], repeat: int, tmp: Path) -> dict:
    """Preview through the service's API and the GDAL WMS read, interleaved, per latency."""
    server = TileServer(tiles)
    settings = load_settings(
        env={},
        data_dir=tmp / "data",
        api_keys=(API_KEY,),
        allowed_networks=("127.0.0.0/8",),
        preview_size=SIZE,
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    body = {
        "server": {"type": "xyz", "name": "bench", "url": server.template, "max_zoom": ZOOM},
        "lat": CENTER_LAT,
        "lon": CENTER_LON,
        "resolution": RESOLUTION,
    }
    rows: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:

        async def preview(fmt: str) -> None:
            url = f"http://127.0.0.1:{port}/servers/test?format={fmt}"
            async with http.post(url, json=body) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

        def gdal(connections: int) -> Callable[[], Awaitable[object]]:
            xml = gdal_wms_xml(server, connections)
            return lambda: loop.run_in_executor(None, gdal_read, xml)

        calls = {
            "service preview, format=auto (JPEG)": lambda: preview("auto"),
            "service preview, format=png": lambda: preview("png"),
            "GDAL WMS read, MaxConnections 2": gdal(2),
            "GDAL WMS read, MaxConnections 16": gdal(16),
        }
        for latency in (0.0, 0.05):
            server.latency = latency
            samples: dict[str, list[float]] = {name: [] for name in calls}
            for call in calls.values():
                await call()  # warm-up (connections, imports)
            server.hits = 0
            for _ in range(repeat):  # interleaved, so load drifts hit every row alike
                for name, call in calls.items():
                    start = time.perf_counter()
                    await call()
                    samples[name].append(time.perf_counter() - start)
            tiles_per_call = server.hits / (repeat * len(calls))
            tag = f"{int(latency * 1000)} ms latency"
            for name in calls:
                rows[f"{name}, {tag}"] = median_ms(samples[name])
            rows[f"upstream tile requests per call, {tag}"] = tiles_per_call
            best = min(rows[f"{n}, {tag}"] for n in calls if n.startswith("GDAL"))
            for name in calls:
                if name.startswith("service"):
                    rows[f"ratio {name} / fastest GDAL, {tag}"] = round(
                        rows[f"{name}, {tag}"] / best, 2
                    )
    await runner.cleanup()
    server.loop.call_soon_threadsafe(server.loop.stop)
    return rows


async def in_memory(source: PreEncodedTiles, repeat: int) -> dict[str, float]:
    """The read path with no network: decode, mosaic and resize; then encode."""
    executor = ThreadPoolExecutor(4)
    out = preview_grid(CENTER_LAT, CENTER_LON, RESOLUTION, SIZE)
    reader = SourceReader(source, executor)
    rows = {"in-memory preview read (decode 16 JPEG, mosaic, resize)": 0.0}
    rows["in-memory preview read (decode 16 JPEG, mosaic, resize)"] = median_ms(
        await timed(lambda: reader.read(out), repeat)
    )
    read = await reader.read(out)
    for fmt in ("jpeg", "png", "webp"):

        async def encode(fmt: str = fmt) -> None:
            codecs.encode(read.rgba[:3], read.rgba[3], fmt)

        rows[f"encode that 512 px preview as {fmt}"] = median_ms(await timed(encode, repeat))
    executor.shutdown()
    return rows


async def profile(source: PreEncodedTiles) -> None:
    """cProfile of 20 in-memory previews and their JPEG and PNG encodes, in this thread."""
    out = preview_grid(CENTER_LAT, CENTER_LON, RESOLUTION, SIZE)
    reader = SourceReader(source, None)
    # Run the executor's work inline, where the profiler sees it.
    loop = asyncio.get_running_loop()
    loop.run_in_executor = lambda _e, f, *a: _done(loop, f(*a))  # type: ignore[method-assign,assignment]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        read = await reader.read(out)
        codecs.encode(read.rgba[:3], read.rgba[3], "jpeg")
        codecs.encode(read.rgba[:3], read.rgba[3], "png")
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


def _done(loop: asyncio.AbstractEventLoop, value: object) -> asyncio.Future[object]:
    future = loop.create_future()
    future.set_result(value)
    return future


async def main(repeat: int, with_profile: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        renderer = GroundTruthRenderer(write_ground_truth(Path(tmp) / "gt.tif"))
        source = PreEncodedTiles(renderer, "jpeg")
        if with_profile:
            await profile(source)
            return
        rows = await service_vs_gdal(source.tiles, repeat, Path(tmp))
    rows.update(await in_memory(source, repeat))
    rows.update(bench_codecs.measure(repeat * 3))
    print(f"# {platform.machine()}, Python {platform.python_version()}, {bench_codecs.versions()}")
    for key, value in rows.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.profile))
