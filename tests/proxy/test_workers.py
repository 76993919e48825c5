"""``serve --workers N``: processes sharing one port, metrics summed over them, supervision."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import multiprocess

from proxy.metrics import render_multiprocess
from tests.proxy.test_metrics import sample

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
P = "imagery_proxy_"

WRITER = """
import os
from proxy.metrics import Metrics, server_scope
from proxy.cache.types import CacheKey
metrics = Metrics()
with server_scope("s1"):
    metrics.upstream.started()
    metrics.upstream.finished(200, 0.02)
    metrics.cache.hit(CacheKey("ab" + "0" * 62, "tile", 1, 0, 0))
print(os.getpid())
"""


def test_figures_of_several_processes_are_summed(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {**ENV, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", WRITER], env=env, check=True, capture_output=True
            ).stdout
        )
        for _ in range(2)
    ]
    text = render_multiprocess(folder).decode()
    assert sample(text, P + "upstream_requests_total", server="s1", code="200") == 2
    assert sample(text, P + "upstream_request_duration_seconds_count", server="s1") == 2
    assert sample(text, P + "cache_hits_total", server="s1") == 2
    assert sample(text, P + "upstream_in_flight", server="s1") == 0
    assert sample(text, P + "workers") == 2
    # What the supervisor does when a worker exits: its live gauges go, its counters stay.
    multiprocess.mark_process_dead(pids[0], str(folder))
    text = render_multiprocess(folder).decode()
    assert sample(text, P + "workers") == 1
    assert sample(text, P + "upstream_requests_total", server="s1", code="200") == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_serve(tmp_path: Path, port: int, workers: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        cwd=tmp_path,
        env=ENV,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def workers_of(pid: int) -> list[int]:
    """The spawned workers among the children (multiprocessing's resource tracker is one too)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    found = [int(p) for p in text.split()]
    return [p for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


@pytest.mark.slow
async def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path):
    port = free_port()
    proc = await start_serve(tmp_path, port, 2)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # both workers up: their live gauges sum to 2
                try:
                    key = (tmp_path / "data" / "api-key").read_text().strip()
                    resp = await session.get(f"{url}/metrics", headers={"X-API-Key": key})
                    if sample(await resp.text(), P + "workers") == 2:
                        break
                except (aiohttp.ClientConnectionError, FileNotFoundError):
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("two workers never reported")
            workers = workers_of(proc.pid)
            assert len(workers) == 2
            for _ in range(4):  # new connections, spread by the kernel: each one answers
                async with aiohttp.ClientSession() as fresh:
                    assert (await fresh.get(f"{url}/health")).status == 200
            assert list((tmp_path / "data" / "metrics").glob("*.db"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
async def test_a_worker_that_cannot_start_fails_the_command(tmp_path):
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no worker can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = await start_serve(tmp_path, taken.getsockname()[1], 2)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()
    assert b"address already in use" in err and b"Traceback" not in err


FREEZER = """
import asyncio, gc, sys
from aiohttp import web
from proxy.config import load_settings
from proxy.workers import serving_app

async def main():
    settings = load_settings(env={}, data_dir=sys.argv[1], api_keys=("k",))
    app = serving_app(settings)
    before = gc.get_freeze_count()
    runner = web.AppRunner(app)
    await runner.setup()  # start-up: the services open, then the objects are frozen
    frozen = gc.get_freeze_count()
    print(before, frozen)
    await runner.cleanup()

asyncio.run(main())
"""


def test_serve_freezes_the_objects_of_start_up(tmp_path):
    """Full collections skip what lives as long as the process (they held reads 20-90 ms)."""
    out = subprocess.run(
        [sys.executable, "-c", FREEZER, str(tmp_path / "data")],
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    before, frozen = int(out[0]), int(out[1])
    assert before == 0
    assert frozen > 50_000  # modules, the catalog, the opened services
