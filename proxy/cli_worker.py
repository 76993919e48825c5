"""``imagery-proxy worker``: run job cells without serving HTTP (proxy/jobs/worker.py)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from proxy.config import Settings
from proxy.errors import StartupError
from proxy.jobs.worker import run_worker


def add_commands(commands: Any) -> None:
    """Add ``worker`` to the sub-command parser ``commands``."""
    worker = commands.add_parser(
        "worker",
        help="run job cells claimed from the catalog (jobs = postgres), until SIGTERM",
    )
    worker.add_argument(
        "--slots", type=int, help="cells run at once (default: job_workers, else 2)"
    )
    worker.set_defaults(run=cmd_worker)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run cells until SIGTERM or SIGINT; running cells are given back on the way out."""
    slots = settings.worker_job_slots if args.slots is None else args.slots
    if slots < 1:
        raise StartupError(f"--slots must be at least 1, not {slots}")
    return asyncio.run(run_worker(settings, slots))
