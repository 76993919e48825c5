"""Tile serving under load: this service against a bare aiohttp handler and MapProxy.

Run: python -m benchmarks.bench_tiles [--mapproxy-venv /work/bench-venv] [--runs 3]

One load generator for all: ``wrk -t1 -c64 -d8s --latency`` (Debian's), ``runs`` runs per
row, medians. The same 256 distinct ~20 KB JPEGs everywhere, from an aiohttp upstream on
loopback that answers after 50 ms. Rows: the floor (a bare aiohttp handler returning
those bytes, 1 and 2 processes); this service's memory hits (1 and 2 workers), disk hits
(``cache_memory_bytes`` = 1: every hit reads its file) and cold misses (server
``max_concurrency`` 64; each run asks tiles nobody asked before); MapProxy under gunicorn
(gthread, 2 workers x 32 threads: 64 requests at once, as wrk's 64 connections) with a
file cache, hits and cold misses. MapProxy runs from its own venv (``pip install mapproxy
gunicorn``), never the project's; without it those rows are skipped with a message.
Every server runs in a process of its own; the load average is read around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import attrs

from .wrk_load import (
    HIT_Z,
    KEY,
    NO_PROXY,
    ROOT,
    X0,
    Y0,
    Procs,
    Run,
    cold_script,
    free_port,
    hits_script,
    http,
    make_tiles,
    serve_bytes,
    wait_up,
    wrk,
)

MAPPROXY_YAML = """\
services:
  tms:
    use_grid_names: true
    origin: nw
layers:
  - name: bench
    title: bench
    sources: [bench_cache]
caches:
  bench_cache:
    grids: [webmercator]
    sources: [bench_tiles]
    format: image/jpeg
    cache:
      type: file
      directory: {cache}
sources:
  bench_tiles:
    type: tile
    grid: webmercator
    url: http://127.0.0.1:{port}/tiles/%(z)s/%(x)s/%(y)s.jpg
grids:
  webmercator:
    base: GLOBAL_WEBMERCATOR
    origin: nw
globals:
  cache:
    base_dir: {cache}
    lock_dir: {cache}/locks
"""
QUIET = ", no access log"
MAPPROXY_PATH = "/tiles/1.0.0/bench/webmercator/%d/%d/%d.jpeg"


@attrs.frozen
class Row:
    """One scenario: where wrk goes, and its script (a cold row gets a fresh one per run)."""

    name: str
    url: str
    template: str
    cold: bool = False


class Bench:
    """Every server up at once, then the runs round-robin over the rows.

    Interleaving spreads the machine's noise (other work on the shared cores) evenly
    over the rows instead of handing one row a quiet minute and the next a busy one.
    """

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs = Procs(work)
        self.rows: dict[str, list[Run]] = {}
        self.cold_row = 1000  # each cold run starts below the last one's tiles

    def run(self) -> None:
        """Start the servers, warm the hit rows, then ``runs`` rounds over every row."""
        tiles = self.work / "tiles"
        tiles.mkdir()
        self.tile_bytes = make_tiles(tiles)
        up = free_port()
        self.bytes_server("upstream", up, 0.05)
        floor, floor2 = free_port(), free_port()
        self.bytes_server("floor", floor, 0.0)
        self.bytes_server("floor2", floor2, 0.0, reuse=True)
        self.bytes_server("floor2", floor2, 0.0, reuse=True)
        path = "/tiles/%d/%d/%d.jpg"
        rows = [
            Row("floor, 1 process", f"http://127.0.0.1:{floor}", path),
            Row("floor, 2 processes", f"http://127.0.0.1:{floor2}", path),
        ]
        rows += self.service_rows(up) + self.mapproxy_rows(up)
        scripts = {
            r.name: hits_script(self.work, f"hits{i}", r.template) for i, r in enumerate(rows)
        }
        for row in rows:  # not counted: fills every worker's memory tier, warms connections
            if not row.cold:
                print("warming", row.name, flush=True)
                wrk(
                    row.url,
                    scripts[row.name],
                    argparse.Namespace(**{**vars(self.args), "duration": 2}),
                )
        for k in range(self.args.runs):
            for i, row in enumerate(rows):
                script = scripts[row.name]
                if row.cold:
                    script = cold_script(self.work, f"cold{i}-{k}", row.template, self.cold_row)
                    self.cold_row += 1000
                run = wrk(row.url, script, self.args)
                self.rows.setdefault(row.name, []).append(run)
                print(row.name, round(run.rps), run.p99_ms, run.errors, run.load, flush=True)

    def bytes_server(self, name: str, port: int, delay: float, reuse: bool = False) -> None:
        cmd = [sys.executable, "-m", "benchmarks.bench_tiles", "--serve-bytes", str(port)]
        cmd += ["--tiles", str(self.work / "tiles"), "--delay", str(delay)]
        self.procs.start(name, cmd + (["--reuse-port"] if reuse else []), self.env())
        wait_up(f"http://127.0.0.1:{port}/tiles/0/0/0.jpg")

    def env(self, **settings: object) -> dict[str, str]:
        env = {**NO_PROXY, "PYTHONPATH": str(ROOT)}
        env.update({f"IMAGERY_PROXY_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def service(self, name: str, workers: int, **settings: object) -> str:
        """A ``serve`` on a port of its own, over the data folder they all share."""
        port = free_port()
        data = self.work / "data"
        env = self.env(data_dir=data, api_keys=KEY, allowed_networks="127.0.0.0/8", **settings)
        cmd = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)]
        self.procs.start(name, cmd + ["--workers", str(workers)], env)
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/health")
        return url

    def service_rows(self, up: int) -> list[Row]:
        """Memory hits (1 and 2 workers), disk hits, cold misses; hits also without access log.

        The access log writes a line per request (aiohttp's default; gunicorn's has none).
        """
        url = self.service("service", 1)
        config = {"name": "bench", "type": "xyz", "max_concurrency": 64, "max_zoom": 19}
        config["url"] = f"http://127.0.0.1:{up}/tiles/{{z}}/{{x}}/{{y}}.jpg"
        sid = json.loads(http(url + "/servers", config))["id"]
        tile = f"/servers/{sid}/tiles/%d/%d/%d"
        rows = [Row("service cold misses, 1 worker", url, tile, cold=True)]
        for suffix, settings in (("", {}), (QUIET, {"log_level": "WARNING"})):
            url = url if not suffix else self.service("service-q", 1, **settings)
            rows.append(Row("service memory hits, 1 worker" + suffix, url, tile))
            url2 = self.service("service2" + suffix, 2, **settings)
            rows.append(Row("service memory hits, 2 workers" + suffix, url2, tile))
            if not suffix:  # MapProxy runs 2 processes: the same CPU share under load
                rows.append(Row("service cold misses, 2 workers", url2, tile, cold=True))
            disk = self.service("disk" + suffix, 1, cache_memory_bytes=1, **settings)
            rows.append(Row("service disk hits, 1 worker" + suffix, disk, tile))
        return rows

    def mapproxy_rows(self, up: int) -> list[Row]:
        """MapProxy hits and cold misses, or none when its venv is missing."""
        venv = Path(self.args.mapproxy_venv)
        gunicorn = venv / "bin" / "gunicorn"
        if not gunicorn.exists() or not (venv / "bin" / "mapproxy-util").exists():
            print(
                f"MapProxy skipped: no gunicorn and mapproxy in {venv} (python -m venv "
                f"{venv} && {venv}/bin/pip install mapproxy gunicorn)",
                flush=True,
            )
            return []
        yaml = self.work / "mapproxy.yaml"
        yaml.write_text(MAPPROXY_YAML.format(cache=self.work / "mpcache", port=up))
        port = free_port()
        app = f"mapproxy.wsgiapp:make_wsgi_app({str(yaml)!r})"
        cmd = [str(gunicorn), "-k", "gthread", "-w", "2", "--threads", "32"]
        self.procs.start("mapproxy", cmd + ["-b", f"127.0.0.1:{port}", app])
        url = f"http://127.0.0.1:{port}"
        sample = wait_up(url + MAPPROXY_PATH % (HIT_Z, X0, Y0))
        same = sample == (self.work / "tiles" / "0.jpg").read_bytes()
        print(f"MapProxy tile: {len(sample)} bytes, the upstream's own bytes: {same}", flush=True)
        return [
            Row("MapProxy hits", url, MAPPROXY_PATH),
            Row("MapProxy cold misses", url, MAPPROXY_PATH, cold=True),
        ]


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in runs))


def report(bench: Bench, args: argparse.Namespace) -> str:
    """The markdown table of medians, then the ratios against the targets."""
    rows, lines = bench.rows, []
    lines.append(
        "| scenario | req/s (median) | runs (req/s) | p99 ms (median) | errors | load avg |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, runs in rows.items():
        each = " / ".join(str(round(r.rps)) for r in runs)
        errors = sum(r.errors for r in runs)
        load = statistics.mean(r.load for r in runs)
        lines.append(
            f"| {name} | {median(runs, 'rps'):.0f} | {each} | {median(runs, 'p99_ms'):.2f} "
            f"| {errors} | {load:.1f} |"
        )
    rps = {name: median(runs, "rps") for name, runs in rows.items()}
    checks = [
        (
            f"cold misses ({n} worker{'s' if n > 1 else ''}) / MapProxy cold misses",
            f"service cold misses, {n} worker{'s' if n > 1 else ''}",
            "MapProxy cold misses",
            1.5,
        )
        for n in (1, 2)
    ]
    for q in ("", QUIET):
        checks += [
            (
                f"memory hits / floor, 1 process each{q}",
                f"service memory hits, 1 worker{q}",
                "floor, 1 process",
                0.7,
            ),
            (
                f"memory hits / floor, 2 processes each{q}",
                f"service memory hits, 2 workers{q}",
                "floor, 2 processes",
                0.7,
            ),
            (
                f"memory hits (1 worker) / MapProxy hits{q}",
                f"service memory hits, 1 worker{q}",
                "MapProxy hits",
                2.5,
            ),
            (
                f"memory hits (2 workers, as MapProxy's 2) / MapProxy hits{q}",
                f"service memory hits, 2 workers{q}",
                "MapProxy hits",
                2.5,
            ),
            (
                f"disk hits (1 worker) / MapProxy hits{q}",
                f"service disk hits, 1 worker{q}",
                "MapProxy hits",
                1.5,
            ),
        ]
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    for label, a, b, target in checks:
        if a in rps and b in rps:
            value = rps[a] / rps[b]
            verdict = "met" if value >= target else "**missed**"
            lines.append(f"| {label} | {value:.2f} | >= {target} ({verdict}) |")
    for name, runs in rows.items():
        if name.startswith("service") and "hits" in name:
            p99 = median(runs, "p99_ms")
            verdict = "met" if p99 < 10 else "**missed**"
            lines.append(f"| p99 of {name} | {p99:.2f} ms | < 10 ms ({verdict}) |")
    lines.append("")
    lines.append(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.platform()}, "
        f"Python {platform.python_version()}; tiles: 256 distinct JPEGs, {bench.tile_bytes} "
        f"bytes on average; wrk -t1 -c{args.connections} -d{args.duration}s --latency, "
        f"{args.runs} runs a row."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario once (or serve tile bytes, as a child process of the run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mapproxy-venv", default="/work/bench-venv", help="venv with mapproxy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve-bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tiles", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bytes:
        serve_bytes(args.serve_bytes, args.tiles, args.delay, args.reuse_port)
        return
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            bench.run()
        finally:
            bench.procs.stop()
        print(report(bench, args))


if __name__ == "__main__":
    main()
