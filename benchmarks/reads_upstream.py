"""The fake upstream of ``benchmarks.bench_reads``: a slow XYZ tile server, its GDAL description.

Every zoom-15 tile is one of a few pre-encoded JPEG tiles of the ground truth, made
distinct by a comment naming the tile (:func:`tile_bytes`), answered after a fixed latency.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.process
import threading
from typing import Any

import rasterio
from aiohttp import web
from pyproj import Transformer
from rasterio.windows import from_bounds

from streaming import grid
from streaming.mosaic import Grid
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, CENTER_X, CENTER_Y
from tests.upstreams.render import GroundTruthRenderer

ZOOM, WINDOW = 15, 2048
HALF = 20037508.342789244
RES = 2 * HALF / 256 / 2**ZOOM  # Web Mercator metres per pixel at zoom 15
STEP = WINDOW + 256  # windows this far apart share no tile
COLS, ROWS = 4, 2  # 8 disjoint windows for the /health run


class TileServer:
    """Any zoom-15 tile, from a pool of JPEG tiles, after ``latency``; counts and in-flight peak.

    ``process=True`` serves from a child process, as a real upstream is never in the
    service's process: a thread here takes the GIL from the service's event loop for its
    own request handling (a quarter of the loop's time in a cold read of 81 tiles).
    """

    def __init__(self, pool: list[bytes], latency: float, process: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        # hits, in flight, peak, port: shared with the server (its loop is the only writer)
        self.counters = ctx.Array("q", 4, lock=False)
        started = ctx.Event()
        args = (pool, latency, self.counters, started)
        self.runner: threading.Thread | multiprocessing.process.BaseProcess
        if process:
            self.runner = ctx.Process(target=serve, args=args, daemon=True)
        else:
            self.runner = threading.Thread(target=serve, args=args, daemon=True)
        self.runner.start()
        if not started.wait(60):
            raise RuntimeError("the fake upstream did not start")
        self.port = int(self.counters[3])

    @property
    def hits(self) -> int:
        return int(self.counters[0])

    @property
    def peak(self) -> int:
        return int(self.counters[2])

    def template(self, dollar: bool = False) -> str:
        z, x, y = ("${z}", "${x}", "${y}") if dollar else ("{z}", "{x}", "{y}")
        return f"http://127.0.0.1:{self.port}/tiles/{z}/{x}/{y}.jpg"

    def reset(self) -> None:
        self.counters[0] = self.counters[2] = 0

    def close(self) -> None:
        if isinstance(self.runner, threading.Thread):
            self.counters[3] = -1  # the thread's loop stops on its next check
            self.runner.join(5)
        else:
            self.runner.terminate()
            self.runner.join(5)


def serve(pool: list[bytes], latency: float, counters: Any, started: Any) -> None:
    """Run the tile server until ``counters[3]`` turns -1 (thread) or the process ends."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def tile(request: web.Request) -> web.Response:
        counters[0] += 1
        counters[1] += 1
        counters[2] = max(counters[2], counters[1])
        try:
            await asyncio.sleep(latency)
        finally:
            counters[1] -= 1
        x, y = int(request.match_info["x"]), int(request.match_info["y"])
        return web.Response(body=tile_bytes(pool, x, y), content_type="image/jpeg")

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/tiles/{z}/{x}/{y}.jpg", tile)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        counters[3] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        while counters[3] != -1:
            await asyncio.sleep(0.05)
        await runner.cleanup()

    loop.run_until_complete(run())
    loop.close()


class PoolTiles:
    """The same tiles in process: a :class:`TileSource` answering from the pool, no I/O."""

    def __init__(self, pool: list[bytes]) -> None:
        self.pool, self.tms, self.min_zoom, self.max_zoom = pool, grid.web_mercator_tms(), 0, ZOOM

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        return FetchedImage(tile_bytes(self.pool, tile.x, tile.y), "image/jpeg")


def tile_bytes(pool: list[bytes], x: int, y: int) -> bytes:
    """Tile (x, y): a JPEG of the pool, with a comment (COM segment) naming the tile.

    Every tile is then distinct bytes, as a real upstream's are: the service's memory of
    decoded tiles (keyed by the bytes) would otherwise decode each of the pool's 16 images
    once and copy the other 65 tiles of a cold read (rounds 1-5 of benchmarks/RESULTS.md
    measured that: 16 decodes per cold read of 81 tiles, not 81).
    """
    jpeg = pool[(x * 7 + y) % len(pool)]
    text = f"tile {x},{y}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def tile_pool(renderer: GroundTruthRenderer) -> list[bytes]:
    """16 distinct JPEG tiles of the ground truth around its centre."""
    tms = grid.web_mercator_tms()
    x, y, _ = tms.tile(CENTER_LON, CENTER_LAT, ZOOM)
    tiles = [
        renderer.tile(tms, x + i, y + j, ZOOM, 256, "jpeg") for i in range(4) for j in range(4)
    ]
    return [t for t in tiles if t is not None]


def gdal_xml(server: TileServer, connections: int | None) -> str:
    """GDAL WMS (TMS) description of the upstream at zoom 15; no <Cache>, so every read fetches."""
    limit = "" if connections is None else f"<MaxConnections>{connections}</MaxConnections>"
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{server.template(dollar=True)}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-HALF}</UpperLeftX><UpperLeftY>{HALF}</UpperLeftY>
    <LowerRightX>{HALF}</LowerRightX><LowerRightY>{-HALF}</LowerRightY>
    <TileLevel>{ZOOM}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount>
  {limit}
</GDAL_WMS>"""


def gdal_read(xml: str, window: Grid) -> object:
    """The window at native resolution, read by GDAL (a fresh dataset: no block cache)."""
    left, top = window.transform * (0, 0)
    right, bottom = window.transform * (window.width, window.height)
    with rasterio.open(xml) as src:
        win = from_bounds(left, bottom, right, top, src.transform).round_offsets().round_lengths()
        return src.read(window=win)


def image_aoi() -> dict[str, Any]:
    """A lon/lat rectangle whose image holds COLS x ROWS disjoint windows.

    Its corner lies 100 px before a zoom-15 tile edge on both axes.
    """
    col0 = math.floor((CENTER_X + HALF) / RES) // 256 * 256 - 100  # 100 px off a tile edge
    row0 = math.floor((HALF - CENTER_Y) / RES) // 256 * 256 - 100
    left, top = -HALF + col0 * RES, HALF - row0 * RES
    right, bottom = left + (COLS * STEP) * RES, top - (ROWS * STEP) * RES
    to_lonlat = Transformer.from_crs(3857, 4326, always_xy=True)
    (w, e), (s, n) = to_lonlat.transform([left, right], [bottom, top])
    ring = [[w + 1e-9, s + 1e-9], [e - 1e-9, s + 1e-9], [e - 1e-9, n - 1e-9], [w + 1e-9, n - 1e-9]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
