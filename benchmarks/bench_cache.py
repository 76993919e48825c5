"""Per-call cost of the tile cache's hit paths and of its integrity check.

Run: python -m benchmarks.bench_cache [--repeat N] [--calls N]
256 distinct ~20 KB tiles in a temporary folder (page cache warm: they were just written).
Each figure is the median over ``repeat`` batches of ``calls`` calls, divided per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proxy.cache.disk import DiskTier
from proxy.cache.entry import CacheEntry, decode, encode
from proxy.cache.tiles import CacheKey, Fresh, TileCache, Validators

FP = "ab" * 32
TILES = 256
SIZE = 20_000


async def never(validators: Validators | None) -> Fresh:
    raise AssertionError("a hit must not fetch")


def per_call_us(samples: list[float], calls: int) -> float:
    return round(statistics.median(samples) / calls * 1e6, 2)


async def timed_async(call: Callable[[int], Awaitable[object]], calls: int, repeat: int) -> float:
    for i in range(calls):  # warm-up
        await call(i)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(calls):
            await call(i)
        samples.append(time.perf_counter() - start)
    return per_call_us(samples, calls)


def timed(call: Callable[[int], object], calls: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(calls):
            call(i)
        samples.append(time.perf_counter() - start)
    return per_call_us(samples, calls)


async def run(repeat: int, calls: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    keys = [CacheKey(FP, "tile", 14, 8000 + i % 16, 5000 + i // 16) for i in range(TILES)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        root = Path(tmp) / "cache"
        warm = TileCache(root, executor=pool)
        await warm.start()
        for key in keys:
            await warm.put(key, warm.entry(os.urandom(SIZE), "image/png", 3600))

        async def hits(name: str, cache: TileCache) -> None:
            async def hit(i: int) -> object:
                return await cache.get_or_fetch(keys[i % TILES], never, ttl=3600)

            rows.append((name, await timed_async(hit, calls, repeat)))

        await hits("memory hit: get_or_fetch", warm)
        await hits("disk hit, read in the loop + check", TileCache(root, memory_bytes=0))
        hop = TileCache(root, executor=pool, memory_bytes=0)
        hop.disk = DiskTier(root, executor=pool, inline_max=0)
        await hits("disk hit, read in the executor + check", hop)

        paths = [str(root / k.id) for k in keys]

        def raw_read(i: int) -> bytes:
            fd = os.open(paths[i % TILES], os.O_RDONLY)
            try:
                return os.read(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)

        rows.append(("reference: open+fstat+read+close, no check", timed(raw_read, calls, repeat)))

        entry = CacheEntry.create(os.urandom(SIZE), "image/png", stored_at=time.time(), ttl=60)
        head, body = encode(entry)
        good = head + body
        bad = good[:-100] + bytes([good[-100] ^ 1]) + good[-99:]
        rows.append(
            ("check: decode a good 20 KB file", timed(lambda i: decode(good), calls, repeat))
        )
        rows.append(
            ("check: decode a corrupt one (rejected)", timed(lambda i: decode(bad), calls, repeat))
        )
        rows.append(
            ("check: of which crc32 of the body", timed(lambda i: zlib.crc32(body), calls, repeat))
        )

        # Where the in-loop read stops paying (disk.INLINE_READ_MAX).
        inline = DiskTier(root, executor=pool, inline_max=1 << 20)
        hop_only = DiskTier(root, executor=pool, inline_max=0)
        for kb in (64, 128, 256):
            rel = CacheKey(FP, "tile", 15, kb, 0).id
            blob = CacheEntry.create(os.urandom(kb * 1024), "image/jpeg", stored_at=0, ttl=60)
            await inline.write(rel, blob)
            for name, tier in (("in the loop", inline), ("in the executor", hop_only)):

                async def read(i: int, rel: str = rel, tier: DiskTier = tier) -> object:
                    return await tier.read(rel)

                rows.append(
                    (f"{kb} KB entry read {name}", await timed_async(read, calls // 10, repeat))
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    rows = asyncio.run(run(args.repeat, args.calls))
    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus")
    print("| scenario | per call (µs) |\n|---|---|")
    for name, us in rows:
        print(f"| {name} | {us} |")


if __name__ == "__main__":
    main()
