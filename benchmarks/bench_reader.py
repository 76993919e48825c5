"""Named scenarios for the read path: decode, mosaic+warp, and event-loop lag under load.

Run: python -m benchmarks.bench_reader [--repeat N]
Tiles are pre-encoded in memory, so the figures measure our work, not a network.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streaming import grid, mosaic
from streaming.decode import decode_rgba
from streaming.reader import SourceReader, preview_grid
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, write_ground_truth
from tests.upstreams.render import GroundTruthRenderer


class PreEncodedTiles:
    """A tile source answering from a dict of encoded tiles (no I/O)."""

    def __init__(self, renderer: GroundTruthRenderer, fmt: str, zooms: range) -> None:
        self.tms, self.min_zoom, self.max_zoom = grid.web_mercator_tms(), 0, zooms.stop - 1
        self.tiles: dict[TileIndex, bytes] = {}
        for z in zooms:
            x, y, _ = self.tms.tile(CENTER_LON, CENTER_LAT, z)
            for dx in range(-3, 4):
                for dy in range(-3, 4):
                    t = TileIndex(x + dx, y + dy, z)
                    data = renderer.tile(self.tms, t.x, t.y, t.z, 256, fmt)
                    if data is not None:
                        self.tiles[t] = data
        self.content_type = f"image/{fmt}"

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        data = self.tiles.get(tile)
        return None if data is None else FetchedImage(data, self.content_type)


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


async def loop_lag_during(work: Awaitable[object], tick: float = 0.002) -> float:
    """Largest delay of a periodic callback while ``work`` runs (ms): blocked-loop detector."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(tick)
            worst = max(worst, time.perf_counter() - start - tick)

    task = asyncio.create_task(ticker())
    await work
    done = True
    await task
    return round(worst * 1000, 2)


async def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        renderer = GroundTruthRenderer(write_ground_truth(Path(tmp) / "gt.tif"))
        png = PreEncodedTiles(renderer, "png", range(13, 15))
        jpeg = PreEncodedTiles(renderer, "jpeg", range(13, 15))
    executor = ThreadPoolExecutor(4)
    out = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 512)
    one_png = next(iter(png.tiles.values()))
    one_jpeg = next(iter(jpeg.tiles.values()))
    results: dict[str, object] = {}

    async def decode(data: bytes) -> None:
        decode_rgba(data)

    results["decode_png_tile_256"] = median_ms(await timed(lambda: decode(one_png), repeat * 5))
    results["decode_jpeg_tile_256"] = median_ms(await timed(lambda: decode(one_jpeg), repeat * 5))
    for threads in (1, mosaic.WARP_THREADS):  # before/after of the threaded warp
        default, mosaic.WARP_THREADS = mosaic.WARP_THREADS, threads
        for name, source in (("png", png), ("jpeg", jpeg)):
            reader = SourceReader(source, executor)
            samples = await timed(lambda r=reader: r.read(out), repeat)  # type: ignore[misc]
            results[f"preview_512_{name}_z14_warp_threads_{threads}"] = median_ms(samples)
        mosaic.WARP_THREADS = default
    reader = SourceReader(png, executor)
    burst = asyncio.gather(*(reader.read(out) for _ in range(8)))
    start = time.perf_counter()
    results["loop_lag_max_during_8_previews_ms"] = await loop_lag_during(burst)
    results["8_concurrent_previews_wall_ms"] = round((time.perf_counter() - start) * 1000, 1)
    executor.shutdown()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for key, value in results.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    asyncio.run(main(parser.parse_args().repeat))
