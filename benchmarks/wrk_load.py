"""Load generation for benchmarks/bench_tiles.py: tile bytes, helper processes, wrk runs.

wrk's ``-s`` scripts pick the paths (a cycle over 256 hit tiles, or tiles never asked
before); :func:`wrk` parses its ``--latency`` report into a :class:`Run`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import attrs

ROOT = Path(__file__).parents[1]
KEY = "bench-key"
TILES = 16  # a side: 16 x 16 = 256 distinct tiles
HIT_Z, COLD_Z = 18, 19
X0, Y0 = 136000, 92000  # hit tiles: X0.., Y0.. at HIT_Z
NO_PROXY = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}


def make_tiles(folder: Path) -> int:
    """Write 256 distinct 256 px JPEGs of ~20 KB (waves of colour and noise); their mean size."""
    import warnings

    import numpy as np
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    sizes = []
    for i in range(TILES * TILES):
        bands = []
        for _ in range(3):
            f, ph = rng.uniform(2, 9, 2), rng.uniform(0, 6.3, 2)
            wave = np.sin(2 * np.pi * f[0] * xx + ph[0]) + np.sin(2 * np.pi * f[1] * yy + ph[1])
            bands.append(128 + 50 * wave)
        noise = rng.integers(-12, 12, (3, 256, 256))
        img = (np.stack(bands) + noise).clip(0, 255).astype(np.uint8)
        with warnings.catch_warnings(), MemoryFile() as mem:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            profile = {"width": 256, "height": 256, "count": 3, "dtype": "uint8"}
            with mem.open(driver="JPEG", QUALITY=90, **profile) as dst:
                dst.write(img)
            data = mem.read()
        (folder / f"{i}.jpg").write_bytes(data)
        sizes.append(len(data))
    return int(statistics.mean(sizes))


def serve_bytes(port: int, folder: Path, delay: float, reuse_port: bool) -> None:
    """A process serving the tiles at ``/tiles/{z}/{x}/{y}.jpg``, after ``delay`` s."""
    from aiohttp import web

    from proxy.workers import use_uvloop

    bodies = [(folder / f"{i}.jpg").read_bytes() for i in range(TILES * TILES)]

    async def tile(request: web.Request) -> web.Response:
        m = request.match_info
        if delay:
            await asyncio.sleep(delay)
        body = bodies[int(m["x"]) % TILES * TILES + int(m["y"]) % TILES]
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/tiles/{z}/{x}/{y}.jpg", tile)
    use_uvloop()  # as the service does: the floor runs on the same loop
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, reuse_port=reuse_port
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Procs:
    """Server processes of one scenario, stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.running.append(
            subprocess.Popen(cmd, env=env or NO_PROXY, stdout=log, stderr=log, cwd=self.logs)
        )

    def stop(self) -> None:
        for proc in self.running:
            proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.clear()


def http(url: str, data: dict[str, object] | None = None, timeout: float = 30) -> bytes:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, body, {"X-API-Key": KEY, "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_up(url: str, seconds: float = 60) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return http(url, timeout=2)
        except Exception:  # noqa: BLE001 - not up yet, whatever the failure
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@attrs.frozen
class Run:
    """One wrk run."""

    rps: float
    p99_ms: float
    errors: int
    load: float  # 1-minute load average, mean of before and after


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        return float("nan")
    return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[found.group(2)]


def wrk(url: str, script: Path, args: argparse.Namespace) -> Run:
    """One wrk run; a report that cannot be read is printed and counts as NaN."""
    load0 = os.getloadavg()[0]
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    cmd += ["-H", f"X-API-Key: {KEY}", "-s", str(script), url]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=NO_PROXY, timeout=args.duration + 60
    )
    out = done.stdout
    load = (load0 + os.getloadavg()[0]) / 2
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\n\s+99%\s+(\S+)", out)
    if done.returncode or rps is None or p99 is None:
        print(f"unreadable wrk report for {url}:\n{out}{done.stderr}", file=sys.stderr, flush=True)
        return Run(float("nan"), float("nan"), -1, load)
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout):? (\d+)", out))
    return Run(float(rps.group(1)), _ms(p99.group(1)), errors, load)


def hits_script(folder: Path, name: str, template: str) -> Path:
    """A wrk script cycling over the 256 hit tiles (``template`` % (z, x, y))."""
    paths = [template % (HIT_Z, X0 + i, Y0 + j) for i in range(TILES) for j in range(TILES)]
    lua = "local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\nlocal i = 0\n"
    lua += (
        "request = function()\n  i = i + 1\n  return wrk.format(nil, paths[i % #paths + 1])\nend\n"
    )
    path = folder / f"{name}.lua"
    path.write_text(lua)
    return path


def cold_script(folder: Path, name: str, template: str, row: int) -> Path:
    """A wrk script asking tiles never asked before: 4096 a row from ``row`` down, at COLD_Z."""
    lua = "local i = 0\nrequest = function()\n  i = i + 1\n"
    lua += f'  return wrk.format(nil, string.format("{template}", {COLD_Z}, i % 4096, '
    lua += f"{row} + math.floor(i / 4096)))\nend\n"
    path = folder / f"{name}.lua"
    path.write_text(lua)
    return path
