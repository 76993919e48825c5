"""Scale-out, cache-hit part: tile hits with 1, 2 and 3 replicas, Redis tier against local disk.

Run: python -m benchmarks.bench_scale [--runs 3] [--duration 5] [--part cache|workers|all]
(the job-worker part, ``--part workers``, is benchmarks/scale_workers.py)

Each replica is an ``imagery-proxy serve`` process (1 worker) on a port of its own with a
data_dir of its own, as replicas on several machines would be (no load balancer: one
``wrk -t1`` per replica, started together, the connections split evenly, requests/s
summed, the worst p99 kept). Tiers: ``redis`` (``cache_url`` to a redis-server this script
starts on a free port, ``--save ""``: memory only, every replica on it) and ``disk`` (the
default local tier, each replica warmed on its own). Hit kinds: ``memory`` (the default
LRU holds the 256 tiles: the tier below is idle) and ``tier`` (``cache_memory_bytes`` = 1:
every hit reads Redis, or the replica's disk). The same 256 distinct ~20 KB JPEGs as
benchmarks/bench_tiles.py, from the same aiohttp upstream (loopback, 50 ms delay). The
replicas' own counters give each row's Redis errors and upstream requests during its runs
(a hit row should have none: an error there is a GET past ``redis_timeout``, served as a miss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from . import scale_workers
from .wrk_load import (
    HIT_Z,
    KEY,
    NO_PROXY,
    ROOT,
    TILES,
    X0,
    Y0,
    Procs,
    Run,
    free_port,
    hits_script,
    http,
    make_tiles,
    wait_up,
    wrk,
)

REPLICAS = (1, 2, 3)
TIERS = ("redis", "disk")
KINDS = ("memory", "tier")


class Scale:
    """One configuration at a time: start its replicas, warm them, run, stop them."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs = Procs(work)
        self.rows: dict[str, list[Run]] = {}
        # Redis errors and upstream requests during the measured runs, by row.
        self.counts: dict[str, tuple[float, float]] = {}

    def run(self) -> None:
        tiles = self.work / "tiles"
        tiles.mkdir()
        self.tile_bytes = make_tiles(tiles)
        up = free_port()
        cmd = [sys.executable, "-m", "benchmarks.bench_tiles", "--serve-bytes", str(up)]
        self.procs.start("upstream", cmd + ["--tiles", str(tiles), "--delay", "0.05"])
        wait_up(f"http://127.0.0.1:{up}/tiles/0/0/0.jpg")
        self.redis_port = free_port()
        redis = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        self.procs.start("redis", redis + ["--save", "", "--appendonly", "no"])
        time.sleep(0.5)
        for n in REPLICAS:  # the four configurations of one replica count run interleaved
            replicas = Procs(self.work)
            try:
                group = {}
                for kind in KINDS:
                    for tier in TIERS:
                        tag = f"n{n}-{kind}-{tier}"
                        urls = [self.replica(replicas, f"{tag}-r{i}", tier, kind) for i in range(n)]
                        name = f"{kind} hits, {tier} tier, {n} replica{'s' if n > 1 else ''}"
                        group[name] = (urls, self.prepare(urls, up, tag))
                warm = argparse.Namespace(**{**vars(self.args), "duration": 2})
                for urls, scripts in group.values():
                    self.load(urls, scripts, warm)
                before = {name: counters(urls) for name, (urls, _) in group.items()}
                for _ in range(self.args.runs):
                    for name, (urls, scripts) in group.items():
                        run = self.load(urls, scripts, self.args)
                        self.rows.setdefault(name, []).append(run)
                        print(name, round(run.rps), run.p99_ms, run.errors, run.load, flush=True)
                for name, (urls, _) in group.items():
                    after = counters(urls)
                    self.counts[name] = (after[0] - before[name][0], after[1] - before[name][1])
            finally:
                replicas.stop()

    def replica(self, procs: Procs, name: str, tier: str, kind: str) -> str:
        port = free_port()
        settings: dict[str, object] = {
            "data_dir": self.work / name,
            "api_keys": KEY,
            "allowed_networks": "127.0.0.0/8",
            "log_level": "WARNING",  # no access log line per request
        }
        if tier == "redis":
            settings["cache_url"] = f"redis://127.0.0.1:{self.redis_port}/0"
            settings["cache_prefix"] = f"bench-{name}:"  # each configuration starts cold
        if kind == "tier":
            settings["cache_memory_bytes"] = 1
        env = {**NO_PROXY, "PYTHONPATH": str(ROOT)}
        env.update({f"IMAGERY_PROXY_{k.upper()}": str(v) for k, v in settings.items()})
        cmd = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)]
        procs.start(name, cmd, env)
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/health")
        return url

    def prepare(self, urls: list[str], up: int, tag: str) -> list[Path]:
        """Register the server on each replica, fetch the 256 tiles, one wrk script each."""
        config = {"name": "bench", "type": "xyz", "max_concurrency": 64, "max_zoom": 19}
        config["url"] = f"http://127.0.0.1:{up}/tiles/{{z}}/{{x}}/{{y}}.jpg"
        scripts = []
        for i, url in enumerate(urls):
            sid = json.loads(http(url + "/servers", config))["id"]
            template = f"/servers/{sid}/tiles/%d/%d/%d"
            # Through each replica: the disk tier of each must hold them; with Redis the
            # first replica fetches and the others read what it stored.
            paths = [
                url + template % (HIT_Z, X0 + x, Y0 + y) for x in range(TILES) for y in range(TILES)
            ]
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(http, paths))
            scripts.append(hits_script(self.work, f"{tag}-{i}", template))
        return scripts

    def load(self, urls: list[str], scripts: list[Path], args: argparse.Namespace) -> Run:
        """One wrk per replica at once, the connections split among them; summed."""
        share = argparse.Namespace(**{**vars(args), "connections": args.connections // len(urls)})
        with ThreadPoolExecutor(len(urls)) as pool:
            runs = list(
                pool.map(lambda us: wrk(us[0], us[1], share), zip(urls, scripts, strict=True))
            )
        return Run(
            sum(r.rps for r in runs),
            max(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
            statistics.mean(r.load for r in runs),
        )


def counters(urls: list[str]) -> tuple[float, float]:
    """Redis errors and upstream requests so far, summed over the replicas."""
    errors = upstream = 0.0
    for url in urls:
        for family in text_string_to_metric_families(http(url + "/metrics").decode()):
            for sample in family.samples:
                if sample.name == "imagery_proxy_cache_redis_errors_total":
                    errors += sample.value
                elif sample.name == "imagery_proxy_upstream_requests_total":
                    upstream += sample.value
    return errors, upstream


def report(scale: Scale, args: argparse.Namespace) -> str:
    lines = [
        "| scenario | req/s (median, all replicas) | runs | worst p99 ms (median) | errors |"
        " Redis errors | upstream requests | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in scale.rows.items():
        rps = statistics.median(r.rps for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        each = " / ".join(str(round(r.rps)) for r in runs)
        load = statistics.mean(r.load for r in runs)
        errors = sum(r.errors for r in runs)
        redis_errors, upstream = scale.counts.get(name, (float("nan"), float("nan")))
        lines.append(
            f"| {name} | {rps:.0f} | {each} | {p99:.2f} | {errors} | {redis_errors:.0f} "
            f"| {upstream:.0f} | {load:.1f} |"
        )
    lines.append("")
    lines.append(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.platform()}, "
        f"Python {platform.python_version()}, {redis_version()}; tiles: 256 distinct JPEGs, "
        f"{scale.tile_bytes} bytes on average; per run one wrk -t1 -c{args.connections}/N "
        f"-d{args.duration}s per replica, {args.runs} runs a row."
    )
    return "\n".join(lines)


def redis_version() -> str:
    found = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return found.stdout.split(" sha=")[0].strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=60, help="in all, split by replica")
    parser.add_argument(
        "--part", choices=("cache", "workers", "all"), default="all",
        help="cache hits by replica count, job workers (benchmarks/scale_workers.py), or both",
    )  # fmt: skip
    parser.add_argument("--cells", type=int, default=300, help="cells per coordination run")
    args = parser.parse_args(argv)
    if args.part in ("workers", "all"):
        print(scale_workers.run(args), flush=True)
    if args.part == "workers":
        return
    if shutil.which("redis-server") is None or shutil.which("wrk") is None:
        sys.exit("needs redis-server and wrk (apt-get install -y redis-server wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        scale = Scale(args, Path(tmp))
        try:
            scale.run()
        finally:
            scale.procs.stop()
        print(report(scale, args))


if __name__ == "__main__":
    main()
