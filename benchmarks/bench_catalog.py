"""Per-operation cost of the catalog's coordination, SQLite against PostgreSQL (issue 16).

Run: python -m benchmarks.bench_catalog [--cells N] [--repeat N]
SQLite: a catalog file in a temporary folder. PostgreSQL: a fresh database on
``IMAGERY_PROXY_TEST_POSTGRES`` (default postgresql://postgres@127.0.0.1:5432/postgres),
dropped at the end; the same machine, loopback. Medians over ``repeat`` runs, per cell:

- claim + complete, one claimer (a cell's whole coordination cost, lease writes included);
- claim + complete with 8 claimers at once over two catalogs (two pools, as two replicas):
  the cost per cell when claimers contend;
- one quota admission (what every upstream request pays with a quota).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

from proxy.catalog.base import Catalog, NewCell, NewJob
from proxy.catalog.open import open_catalog_at
from proxy.quota.model import QuotaConfig
from proxy.quota.periods import window
from proxy.quota.store import Limits, QuotaStore
from tests.proxy.catalog_backends import create_database, drop_database

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}


async def claim_all(catalogs: list[Catalog], claimers: int) -> None:
    async def one(n: int) -> None:
        cells = catalogs[n % len(catalogs)].cells
        while (claim := await cells.claim(f"w{n}", 30.0)) is not None:
            await cells.complete(
                claim.job_id, claim.index, claim.attempt, output=None, bytes_written=1,
                upstream_requests=1,
            )  # fmt: skip

    await asyncio.gather(*(one(n) for n in range(claimers)))


async def per_cell(catalogs: list[Catalog], cells: int, claimers: int) -> float:
    new = NewJob(kind="bench", name="b", server_id="s", image_id=None, params={})
    await catalogs[0].jobs.create(
        new, [NewCell(index=i, spec={}, polygon=SQUARE) for i in range(cells)]
    )
    start = time.perf_counter()
    await claim_all(catalogs, claimers)
    return (time.perf_counter() - start) / cells


async def per_admission(store: QuotaStore, calls: int) -> float:
    w = window(QuotaConfig(requests=10**9, period="day"), time.time())
    start = time.perf_counter()
    for _ in range(calls):
        await store.admit("s", w, Limits(10**9, None))
    return (time.perf_counter() - start) / calls


async def measure(url: str, path: Path, cells: int, repeat: int) -> dict[str, float]:
    opened = [await open_catalog_at(url, path) for _ in range(2)]
    catalogs = [c for c, _ in opened]
    try:
        one = [await per_cell(catalogs[:1], cells, 1) for _ in range(repeat)]
        many = [await per_cell(catalogs, cells, 8) for _ in range(repeat)]
        quota = [await per_admission(opened[0][1], cells) for _ in range(repeat)]
    finally:
        for catalog, store in opened:
            await store.close()
            await catalog.close()
    return {
        "claim+complete, 1 claimer": statistics.median(one),
        "claim+complete, 8 claimers / 2 pools": statistics.median(many),
        "quota admission": statistics.median(quota),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {args.cells} cells, median of {args.repeat}")
    with tempfile.TemporaryDirectory() as folder:
        results = {"sqlite": await measure("", Path(folder) / "c.sqlite", args.cells, args.repeat)}
    url = await create_database()
    try:
        results["postgresql"] = await measure(url, Path("unused"), args.cells, args.repeat)
    finally:
        await drop_database(url)
    print(f"| operation | {' | '.join(results)} |")
    print(f"|---|{'---|' * len(results)}")
    for name in results["sqlite"]:
        row = " | ".join(f"{results[b][name] * 1e6:.0f} µs" for b in results)
        print(f"| {name} | {row} |")


if __name__ == "__main__":
    asyncio.run(main())
