"""Uploads of cell files to an S3 store through proxy.outputs.s3 (boto3's managed transfer
run in a thread pool, as the materializer runs it): time, peak RSS growth, and the event
loop's worst lag while uploads run (a 5 ms ticker), against moto_server in its own process.

    python benchmarks/bench_outputs_s3.py [--small 20] [--big-mib 96]

moto is a Python server, far slower than S3 or MinIO: the times bound moto, not us; the
memory and loop-lag figures are what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.config import load_settings  # noqa: E402
from proxy.outputs.s3 import S3Outputs  # noqa: E402

MiB = 1024 * 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - start - 0.005)


async def upload_all(store: S3Outputs, files: list[Path], threads: int) -> tuple[float, float]:
    pool = ThreadPoolExecutor(threads)
    loop = asyncio.get_running_loop()
    stop, lags = asyncio.Event(), []  # type: ignore[var-annotated]
    tick = asyncio.create_task(ticker(stop, lags))
    start = time.perf_counter()
    await asyncio.gather(*(
        loop.run_in_executor(pool, store.upload_create_only, f, f"bench/{f.name}", {"a": "1"})
        for f in files
    ))  # fmt: skip
    elapsed = time.perf_counter() - start
    stop.set()
    await tick
    pool.shutdown()
    return elapsed, max(lags) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=20, help="files of 1 MiB")
    parser.add_argument("--big-mib", type=int, default=96, help="one file of this size")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
            aws_secret_access_key="s",
        ).create_bucket(Bucket="bench")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                env={}, data_dir=Path(tmp) / "data", output_url="s3://bench/out",
                s3_endpoint_url=url, s3_region="us-east-1", s3_access_key_id="k",
                s3_secret_access_key="s",
            )  # fmt: skip
            store = S3Outputs.from_settings(settings)
            small = []
            for i in range(args.small):
                path = Path(tmp) / f"small_{i}.tif"
                path.write_bytes(os.urandom(MiB))
                small.append(path)
            big = Path(tmp) / "big_0.tif"
            with big.open("wb") as fh:
                for _ in range(args.big_mib):
                    fh.write(os.urandom(MiB))
            base = peak_rss_mib()
            took, lag = asyncio.run(upload_all(store, small, 2))
            print(f"{args.small} x 1 MiB, 2 writer threads: {took:.2f} s "
                  f"({args.small / took:.1f} files/s), loop lag max {lag:.1f} ms")  # fmt: skip
            took, lag = asyncio.run(upload_all(store, [big], 1))
            grown = peak_rss_mib() - base
            chunk, parts = settings.s3_multipart_bytes / MiB, settings.s3_upload_concurrency
            print(f"1 x {args.big_mib} MiB multipart ({chunk:.0f} MiB parts, {parts} in flight): "
                  f"{took:.2f} s ({args.big_mib / took:.0f} MiB/s), loop lag max {lag:.1f} ms, "
                  f"peak RSS growth {grown:.0f} MiB")  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
