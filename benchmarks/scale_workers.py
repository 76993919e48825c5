"""Scale-out, job-worker part of benchmarks/bench_scale.py (``--part workers``).

Materialize one download import with 1 and 2 ``imagery-proxy worker`` processes (2 cells
at once each, their own data_dir: cold caches, as on separate machines) sharing a fresh
PostgreSQL database (``jobs = postgres``); a ``serve`` replica (runs no cell) takes the
import. The upstream is benchmarks/bench_tiles.py's byte server (256 distinct ~20 KB JPEGs,
50 ms a tile, loopback). The time is from the import's answer to the job's end, as the
catalog records it. Then the coordination per cell on each catalog, in process: claim +
complete with 1 and 8 claimers (benchmarks/bench_catalog.py's loop) and one ``holds``
check (what each running cell asks every ``job_poll_seconds``), as cells/s and checks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .wrk_load import KEY, NO_PROXY, ROOT, Procs, free_port, http, make_tiles, wait_up

WORKERS = (1, 2)
SLOTS = 2  # cells each worker runs at once (the job_workers default)
LON, LAT, SIDE = 10.0, 0.0, 0.04  # the import's square AOI (degrees): ~4.4 km a side
RESOLUTION = 0.6  # m/px: zoom-18 tiles of the byte server
CELL = 1024  # max_cell_pixels: ~50 cells, 16-25 tiles each


def square() -> dict[str, Any]:
    w, s, e, n = LON, LAT, LON + SIDE, LAT + SIDE
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def settings_env(work: Path, name: str, url: str, **extra: object) -> dict[str, str]:
    values: dict[str, object] = {
        "data_dir": work / name,
        "outputs_dir": work / "outputs",
        "catalog_url": url,
        "jobs": "postgres",
        "api_keys": KEY,
        "allowed_networks": "127.0.0.0/8",
        "log_level": "WARNING",
        **extra,
    }
    env = {**NO_PROXY, "PYTHONPATH": str(ROOT)}
    env.update({f"IMAGERY_PROXY_{k.upper()}": str(v) for k, v in values.items()})
    return env


def materialize(work: Path, url: str, up: int, workers: int, run: int) -> dict[str, float]:
    """One job with ``workers`` worker processes: seconds, cells, upstream requests."""
    procs = Procs(work)
    tag = f"w{workers}-r{run}"
    try:
        port = free_port()
        env = settings_env(work, f"replica-{tag}", url)
        procs.start(f"replica-{tag}", [sys.executable, "-m", "proxy.cli", "serve",
                                       "--port", str(port)], env)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/health")
        for n in range(workers):
            env = settings_env(work, f"worker-{tag}-{n}", url)
            cmd = [sys.executable, "-m", "proxy.cli", "worker", "--slots", str(SLOTS)]
            procs.start(f"worker-{tag}-{n}", cmd, env)
        time.sleep(3)  # the workers are up and listening (a NOTIFY starts them)
        config = {"name": f"bench-{tag}", "type": "xyz", "max_concurrency": 8, "max_zoom": 19,
                  "url": f"http://127.0.0.1:{up}/tiles/{{z}}/{{x}}/{{y}}.jpg"}  # fmt: skip
        server = json.loads(http(base + "/servers", config))["id"]
        ask = {"server_id": server, "name": tag, "aois": square(), "method": "download",
               "resolution": RESOLUTION, "max_cell_pixels": CELL}  # fmt: skip
        cpu_before = sum(cpu_seconds(w.pid) for w in procs.running[1:])
        job = json.loads(http(base + "/imports", ask))["job"]
        connections = 0
        while job["state"] not in ("done", "failed", "cancelled"):
            time.sleep(0.2)
            job = json.loads(http(f"{base}/jobs/{job['id']}"))
            connections = max(connections, asyncio.run(count_connections(url)))
        assert job["state"] == "done", job
        seconds = stamp(job["finished_at"]) - stamp(job["created_at"])
        cpu = sum(cpu_seconds(w.pid) for w in procs.running[1:]) - cpu_before
        return {"seconds": seconds, "cells": job["cells_total"], "cpu": cpu,
                "requests": job["upstream_requests"], "connections": connections}  # fmt: skip
    finally:
        procs.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def count_connections(url: str) -> int:
    """Connections to the database now (the workers' pools and listeners, the replica's)."""
    import asyncpg

    from tests.proxy.catalog_backends import ADMIN_URL

    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        name = url.rsplit("/", 1)[1]
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
        return int(await admin.fetchval(query, name))
    finally:
        await admin.close()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def coordination(cells: int, repeat: int) -> dict[str, dict[str, float]]:
    """Seconds per cell (claim + complete) and per ``holds`` check, on each catalog."""
    from proxy.catalog.open import open_catalog_at
    from tests.proxy.catalog_backends import create_database, drop_database

    from .bench_catalog import per_cell

    async def measure(url: str, path: Path) -> dict[str, float]:
        opened = [await open_catalog_at(url, path) for _ in range(2)]
        catalogs = [c for c, _ in opened]
        try:
            one = [await per_cell(catalogs[:1], cells, 1) for _ in range(repeat)]
            many = [await per_cell(catalogs, cells, 8) for _ in range(repeat)]
            holds = [await per_holds(catalogs[0], cells) for _ in range(repeat)]
        finally:
            for catalog, store in opened:
                await store.close()
                await catalog.close()
        return {"claim+complete, 1 claimer": statistics.median(one),
                "claim+complete, 8 claimers": statistics.median(many),
                "holds check": statistics.median(holds)}  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        results = {"sqlite": await measure("", Path(folder) / "c.sqlite")}
    url = await create_database()
    try:
        results["postgresql"] = await measure(url, Path("unused"))
    finally:
        await drop_database(url)
    return results


async def per_holds(catalog: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await catalog.cells.holds("nojob", 0, "w", 1)
    return (time.perf_counter() - start) / calls


def run(args: argparse.Namespace) -> str:
    """Measure, and the Markdown of the figures."""
    from tests.proxy.catalog_backends import create_database, drop_database

    rows: dict[int, list[dict[str, float]]] = {n: [] for n in WORKERS}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        tiles = work / "tiles"
        tiles.mkdir()
        make_tiles(tiles)
        procs = Procs(work)
        up = free_port()
        cmd = [sys.executable, "-m", "benchmarks.bench_tiles", "--serve-bytes", str(up)]
        procs.start("upstream", cmd + ["--tiles", str(tiles), "--delay", "0.05"])
        try:
            wait_up(f"http://127.0.0.1:{up}/tiles/0/0/0.jpg")
            for r in range(args.runs):
                for n in WORKERS:  # interleaved: the machine's load hits both alike
                    url = asyncio.run(create_database())
                    try:
                        rows[n].append(materialize(work, url, up, n, r))
                    finally:
                        asyncio.run(drop_database(url))
                    print(n, "workers", rows[n][-1], flush=True)
        finally:
            procs.stop()
    coord = asyncio.run(coordination(args.cells, args.runs))
    return report(rows, coord)


def report(rows: dict[int, list[dict[str, float]]], coord: dict[str, dict[str, float]]) -> str:
    lines = ["| workers (2 cells at once each) | cells | upstream requests | seconds (median) "
             "| runs | cells/s | upstream req/s | worker CPU s per cell | peak DB connections |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for n, runs in rows.items():
        secs = statistics.median(r["seconds"] for r in runs)
        cells, reqs = runs[0]["cells"], statistics.median(r["requests"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs) / cells
        peak = max(r["connections"] for r in runs)
        each = " / ".join(f"{r['seconds']:.1f}" for r in runs)
        lines.append(f"| {n} | {cells:.0f} | {reqs:.0f} | {secs:.1f} | {each} | "
                     f"{cells / secs:.2f} | {reqs / secs:.1f} | {cpu:.2f} | {peak} |")  # fmt: skip
    lines += ["", "| coordination, per operation | sqlite | postgresql |", "|---|---|---|"]
    for name in coord["sqlite"]:
        cells = " | ".join(
            f"{coord[b][name] * 1e6:.0f} µs ({1 / coord[b][name]:.0f}/s)" for b in coord
        )
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)
