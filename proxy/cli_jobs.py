"""``imagery-proxy jobs``: list, show, watch, cancel, retry and run jobs from the shell.

Like the other commands they open the catalog directly, so they work with or without a
running service; ``jobs run`` (and ``import --method download --wait``) run the job's
cells in this process, side by side with any service sharing the catalog.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from proxy.catalog.base import ENDED, JobRecord
from proxy.config import Settings
from proxy.jobs.downloads import materialize_params
from proxy.jobs.registry import default_kinds
from proxy.jobs.runner import JobRunner
from proxy.jobs.service import Jobs
from proxy.jobs.views import job_view
from proxy.services import Services, open_services

COMPRESSIONS = ("jpeg", "webp", "deflate", "lzw", "zstd")
WATCH_INTERVAL = 0.5


def add_commands(commands: Any) -> None:
    """Add ``jobs`` and its sub-commands to the sub-command parser ``commands``."""
    jobs = commands.add_parser("jobs", help="materialize and seed jobs")
    sub = jobs.add_subparsers(title="jobs commands")
    lst = sub.add_parser("list", help="list jobs, newest first")
    lst.add_argument("--state", choices=("pending", "running", "paused", *sorted(ENDED)))
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(run=cmd_jobs_list)
    for name, func, text in (
        ("show", cmd_jobs_show, "print a job as JSON"),
        ("watch", cmd_jobs_watch, "follow a job with a progress bar until it ends"),
        ("cancel", cmd_jobs_cancel, "cancel a job (its running cells stop within seconds)"),
        ("retry", cmd_jobs_retry, "run the failed cells of a job again"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("job", help="job id")
        cmd.set_defaults(run=func)
    orphans = sub.add_parser("orphans", help="outputs of a job that no done cell records")
    orphans.add_argument("job", help="job id")
    orphans.add_argument("--delete", action="store_true", help="delete them (not adoptable ones)")
    orphans.set_defaults(run=cmd_jobs_orphans)
    run = sub.add_parser("run", help="materialize an image here, without a server")
    run.add_argument("image", help="image id")
    add_materialize_options(run)
    run.set_defaults(run=cmd_jobs_run)


def add_materialize_options(parser: argparse.ArgumentParser) -> None:
    """``--max-cell-pixels`` and ``--compression``."""
    parser.add_argument("--max-cell-pixels", type=int, help="cells' largest side, px")
    parser.add_argument("--compression", choices=COMPRESSIONS, help="default deflate")


def cmd_jobs_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the jobs."""

    async def run() -> list[dict[str, Any]]:
        async with open_services(settings) as services:
            records = await services.catalog.jobs.recent(args.state, args.limit)
            return [job_view(r) for r in records]

    views = asyncio.run(run())
    if args.json:
        _print_json(views)
        return 0
    print(f"{'ID':<14}{'KIND':<13}{'STATE':<11}{'CELLS':<12}{'BYTES':<11}NAME")
    for v in views:
        cells = f"{v['cells']['done']}/{v['cells_total']}"
        size = human_bytes(v["bytes_written"])
        print(f"{v['id']:<14}{v['kind']:<13}{v['state']:<11}{cells:<12}{size:<11}{v['name']}")
    return 0


def cmd_jobs_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print one job."""

    async def run() -> dict[str, Any]:
        async with open_services(settings) as services:
            return job_view(await Jobs(services, {}).get(args.job))

    _print_json(asyncio.run(run()))
    return 0


def cmd_jobs_watch(args: argparse.Namespace, settings: Settings) -> int:
    """Follow a job until it ends; the exit status is 0 only when it ended done."""

    async def run() -> JobRecord:
        async with open_services(settings) as services:
            jobs = Jobs(services, {})
            return await follow(jobs, await jobs.get(args.job))

    return _ended(asyncio.run(run()))


def cmd_jobs_cancel(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel a job."""

    async def run() -> dict[str, Any]:
        async with open_services(settings) as services:
            return job_view(await Jobs(services, {}).cancel(args.job))

    _print_json(asyncio.run(run()))
    return 0


def cmd_jobs_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Retry a job's failed cells (a running service, or ``jobs run``, runs them)."""

    async def run() -> dict[str, Any]:
        async with open_services(settings) as services:
            return job_view(await Jobs(services, {}).retry(args.job))

    _print_json(asyncio.run(run()))
    return 0


def cmd_jobs_orphans(args: argparse.Namespace, settings: Settings) -> int:
    """List a job's orphan outputs (and delete them with ``--delete``), one per line."""
    from proxy.outputs import output_store
    from proxy.outputs.orphans import cleanup, find_orphans

    async def run() -> tuple[list[Any], list[Any]]:
        async with open_services(settings) as services:
            await Jobs(services, {}).get(args.job)  # 404 job_not_found when unknown
            store = output_store(settings)
            found = await find_orphans(services, args.job, store)
            removed = await cleanup(services, args.job, store) if args.delete else []
            return found, removed

    found, removed = asyncio.run(run())
    gone = {(o.key, o.upload_id) for o in removed}
    for orphan in found:
        mark = "deleted" if (orphan.key, orphan.upload_id) in gone else (
            "adoptable" if orphan.adoptable else "orphan"
        )  # fmt: skip
        print(f"{mark}\t{orphan.key}\t{orphan.reason}")
    print(f"{len(found)} orphan(s), {len(removed)} deleted", file=sys.stderr)
    return 0


def cmd_jobs_run(args: argparse.Namespace, settings: Settings) -> int:
    """Create a materialize job of an image and run it here, with a progress bar."""
    from proxy.images.store import load_image, load_server

    async def run() -> JobRecord:
        async with open_services(settings) as services:
            image = await load_image(services, args.image)
            await load_server(services, image)
            jobs = Jobs(services, default_kinds())
            params = materialize_params(
                image.id, max_cell_pixels=args.max_cell_pixels, compression=args.compression
            )
            record = await jobs.create(
                "materialize",
                name=image.name,
                server_id=image.server_id,
                image_id=image.id,
                params=params,
            )
            return await run_here(services, jobs, record)

    return _ended(asyncio.run(run()))


async def run_here(services: Services, jobs: Jobs, record: JobRecord) -> JobRecord:
    """Run ``record``'s cells in this process until the job ends, showing its progress."""
    runner: JobRunner = jobs.make_runner(slots=services.settings.worker_job_slots, job_id=record.id)
    runner.idle_poll = runner.poll  # no listener here: look for the job's cells often
    jobs.runner = runner
    runner.start()
    try:
        return await follow(jobs, record)
    finally:
        await runner.stop()
        jobs.runner = None


async def follow(jobs: Jobs, record: JobRecord) -> JobRecord:
    """Show the job's progress (cells, bytes, rate, ETA) on stderr until it ends."""
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{record.kind} {record.id}", total=None, status="")
        while True:
            view = jobs.view(record)
            progress.update(
                task,
                total=max(view["cells_total"], 1),
                completed=view["cells"]["done"] + view["cells"]["failed"],
                status=status_line(view),
            )
            if record.state in ENDED:
                break
            await asyncio.sleep(WATCH_INTERVAL)
            record = await jobs.get(record.id)
    _print_json(jobs.view(record))
    return record


def status_line(view: dict[str, Any]) -> str:
    """``3/10 cells · 12.5 MB · 2.1 MB/s · ETA 40 s · running``."""
    cells = view["cells"]
    parts = [
        f"{cells['done']}/{view['cells_total']} cells",
        human_bytes(view["bytes_written"]),
        f"{human_bytes(view['rate']['bytes_per_s'])}/s",
    ]
    if cells["failed"]:
        parts.append(f"{cells['failed']} failed")
    if view["eta_seconds"] is not None:
        parts.append(f"ETA {view['eta_seconds']:.0f} s")
    state = view["state"]
    if view["paused"]:
        state = f"paused ({view['paused']['reason']}) until {view['paused']['until']}"
    parts.append(state)
    return " · ".join(parts)


def human_bytes(n: float) -> str:
    """``n`` bytes as B, kB, MB, GB or TB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _ended(record: JobRecord) -> int:
    if record.state != "done":
        print(f"job {record.id} ended {record.state}", file=sys.stderr)
        return 1
    return 0


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
