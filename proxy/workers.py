"""``imagery-proxy serve``: one process, or N worker processes sharing the port.

With ``--workers N`` the parent prepares the data folder once (API key, fingerprint key,
catalog migrations: N processes doing it at once would race), clears the metrics folder,
then starts N workers with the ``spawn`` method. Each worker binds the port with
``SO_REUSEPORT`` and the kernel spreads connections over them. ``spawn``, not ``fork``,
because prometheus-client chooses its multi-process storage when it is first imported,
which the parent has already done; a spawned worker imports it afresh with
``PROMETHEUS_MULTIPROC_DIR`` set.

The parent only supervises: SIGTERM or SIGINT is forwarded to the workers, and when one
worker exits the others are stopped; the exit status is non-zero if any worker failed.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import types
from collections.abc import AsyncIterator, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from aiohttp import web
from prometheus_client import multiprocess

from proxy.accesslog import RedactingAccessLogger
from proxy.app import create_app
from proxy.config import Settings
from proxy.errors import StartupError
from proxy.keys import SERVICES
from proxy.metrics import MULTIPROC_ENV, clear_multiprocess_dir
from proxy.services import open_services

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 2.0  # seconds between a worker's gauge updates and parent checks


def use_uvloop() -> bool:
    """Run the next event loops on uvloop when it is installed (extra ``speed``): ~14 % more."""
    try:
        # By name: uvloop is optional, so it is not a dependency the imports declare.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def serving_app(settings: Settings) -> web.Application:
    """The app as ``serve`` runs it: :func:`create_app`, then the start-up objects frozen."""
    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # after the services' own start-up
    return app


async def freeze_startup_objects(app: web.Application) -> None:
    """Move every object alive after start-up out of the garbage collector's sight.

    Modules, tile matrix sets, projections and the catalog make ~160k objects that live as
    long as the process; each full collection walked them all, 20-90 ms with the event
    loop stopped, every few reads (a cold read's 200 ms outliers: benchmarks/RESULTS.md,
    reads round 4). Frozen, a full collection walks only what came later. No collection
    first: it took 83 ms, before the port is listened on, for ~900 objects of garbage
    (~100 KB, kept for good), and it let ``serve --workers 2`` report a worker up while
    it did not yet listen. CPython's documented use of :func:`gc.freeze` (3 us here).
    """
    gc.freeze()


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    """Serve until stopped; with ``workers`` > 1, as a supervisor of that many processes."""
    if workers <= 1:
        use_uvloop()
        try:
            web.run_app(
                serving_app(settings),
                host=host,
                port=port,
                print=None,
                access_log_class=RedactingAccessLogger,
            )
        except OSError as exc:  # the address is taken or not ours: one line, no traceback
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return 0
    asyncio.run(_prepare(settings))
    folder = settings.data_dir / "metrics"
    clear_multiprocess_dir(folder)
    os.environ[MULTIPROC_ENV] = str(folder)  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(
            target=run_worker, args=(settings, host, port), name=f"worker-{i}", daemon=False
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    log.info("serving on %s:%d with %d workers", host, port, workers)
    return _supervise(procs, folder)


async def _prepare(settings: Settings) -> None:
    """Open the services once: makes the keys and migrates the catalog before any worker."""
    async with open_services(settings):
        pass


def _supervise(procs: Sequence[BaseProcess], folder: Path) -> int:
    """Wait for the workers; stop them all once one exits or a signal comes."""
    stopping = False

    def forward(signum: int, frame: types.FrameType | None) -> None:
        nonlocal stopping
        if not stopping:  # once: a second SIGTERM would cut a worker's graceful shutdown
            stopping = True
            _terminate(procs)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        running: list[BaseProcess] = list(procs)
        while running:
            ended = wait([p.sentinel for p in running])
            for proc in [p for p in running if p.sentinel in ended]:
                proc.join()
                running.remove(proc)
                assert proc.pid is not None
                # Drops the dead worker's live gauges (workers, in flight, memory).
                multiprocess.mark_process_dead(proc.pid, str(folder))  # type: ignore[no-untyped-call]
                if not stopping:
                    log.error("worker %s exited with status %s", proc.name, proc.exitcode)
                    stopping = True
                    _terminate(running)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if all(p.exitcode == 0 for p in procs) else 1


def _terminate(procs: Sequence[BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: aiohttp shuts down gracefully


def run_worker(settings: Settings, host: str, port: int) -> None:
    """One worker process: the whole app on a port shared with the others."""
    # Out of the terminal's process group: Ctrl-C reaches the parent only, which forwards
    # one SIGTERM (a second signal during aiohttp's shutdown would cut it short).
    os.setpgrp()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    use_uvloop()
    app = serving_app(settings)
    app.cleanup_ctx.append(_housekeeping)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            reuse_port=True,
            print=None,
            handle_signals=True,
            access_log_class=RedactingAccessLogger,
        )
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        sys.exit(1)


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Keep this worker's cache size gauges current (a scrape reaches one worker only),
    and stop the worker when its parent is gone (killed without forwarding a signal).
    """
    parent = os.getppid()

    async def loop() -> None:
        while True:
            app[SERVICES].metrics.refresh()
            if os.getppid() != parent:
                log.warning("the supervising process is gone: stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
