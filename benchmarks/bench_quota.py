"""Per-request overhead of upstream quotas (issue 13).

Run: python -m benchmarks.bench_quota [--repeat N] [--calls N]
A catalog file in a temporary folder (WAL, the quota store's ``synchronous=NORMAL``).
Figures are medians over ``repeat`` batches of ``calls`` calls, per call:

- admission + bytes, one after the other (a request's whole quota cost);
- 32 admissions at once (the store's one thread serializes them: cost per request);
- a loopback upstream GET through ``ServerConnection`` without and with a quota
  (the difference is what a real request pays).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from proxy.catalog.sqlite import open_catalog
from proxy.net.client import UpstreamClient
from proxy.net.safety import AddressPolicy
from proxy.quota.enforce import Quotas, owned_by
from proxy.quota.model import QuotaConfig
from proxy.quota.store import SQLiteQuotaStore
from proxy.upstream.base import ServerConnection, UpstreamContext
from proxy.upstream.registry import parse_config

QUOTA = QuotaConfig(requests=10**11, bytes=10**17, period="month")
BODY = b"x" * 20_000


async def timed(call: Callable[[int], Awaitable[object]], calls: int, repeat: int) -> float:
    """Median µs per call of ``calls`` sequential calls."""
    for i in range(min(calls, 50)):  # warm-up
        await call(i)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(calls):
            await call(i)
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) / calls * 1e6, 1)


async def timed_concurrent(
    call: Callable[[int], Awaitable[object]], calls: int, repeat: int
) -> float:
    """Median µs per call of ``calls`` calls, 32 in flight at a time."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for base in range(0, calls, 32):
            await asyncio.gather(*(call(base + i) for i in range(32)))
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) / calls * 1e6, 1)


async def upstream() -> tuple[web.AppRunner, str]:
    async def tile(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="image/png")

    app = web.Application()
    app.router.add_get("/t/{n}", tile)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def main(repeat: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.sqlite"
        catalog = await open_catalog(path)
        store = await SQLiteQuotaStore(path).open()
        quotas = Quotas(store)

        async def admit_and_bytes(i: int) -> None:
            slot = await quotas.admit("bench", QUOTA)
            await quotas.spent("bench", QUOTA, slot, len(BODY))

        async def admit(i: int) -> None:
            await quotas.admit("bench-c", QUOTA)

        rows = [
            (
                "admission + bytes of one request, sequential",
                await timed(admit_and_bytes, calls, repeat),
            ),
            (
                "admission alone, 32 at once (per request)",
                await timed_concurrent(admit, calls, repeat),
            ),
        ]
        runner, base = await upstream()
        client = UpstreamClient(
            policy=AddressPolicy(["127.0.0.0/8"]), timeout=10, connect_timeout=5, max_bytes=1 << 24
        )
        ctx = UpstreamContext(client=client, executor=None, max_image_pixels=1 << 24, quotas=quotas)
        raw = {"type": "xyz", "name": "b", "url": base + "/t/{z}/{x}/{y}"}
        plain = ServerConnection(parse_config(raw), ctx)
        with owned_by("bench-http"):
            metered = ServerConnection(parse_config({**raw, "quota": QUOTA.model_dump()}), ctx)
        assert plain.quota is None and metered.quota is not None
        without = await timed(lambda i: plain.get(f"{base}/t/{i}"), calls, repeat)
        with_quota = await timed(lambda i: metered.get(f"{base}/t/{i}"), calls, repeat)
        rows += [
            ("loopback GET of 20 KB through ServerConnection, no quota", without),
            ("same, with a quota", with_quota),
            ("difference: the quota's cost per upstream request", round(with_quota - without, 1)),
        ]
        await client.close()
        await runner.cleanup()
        await store.close()
        await catalog.close()
    print(f"python {platform.python_version()}, repeat={repeat}, calls={calls}")
    print("| scenario | median per request |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} µs |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=512)
    args = parser.parse_args()
    asyncio.run(main(args.repeat, args.calls))
