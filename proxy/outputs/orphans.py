"""Outputs no done cell records, found and cleaned.

A crash (or a lost claim) between a cell's publish and the catalog's commit leaves an
output no done cell names. Each such output is classified:

- the whole output of a cell that has not ended, in a job that has not ended: *adoptable*,
  a resumed run of the cell records it without fetching again (``CellTarget.prepare``);
- anything else (a cancelled job's uncommitted outputs, a file that is no cell's, an
  output whose size is not the one its done cell recorded, an unfinished multipart upload
  or temporary of a cell no live claim holds): garbage.

:func:`cleanup` removes the garbage; the materializer runs it when it takes a job up in a
process (resume) and at the job's end; ``imagery-proxy jobs orphans JOB [--delete]``
shows them all, and deletes them (adoptable ones too once the job has ended).
Outputs of cells running under a live lease are in flight: never touched.
"""

from __future__ import annotations

import asyncio
import time

from proxy.catalog.base import ENDED, CellRecord, JobRecord
from proxy.jobs.views import outputs_of
from proxy.outputs.base import Orphan, OutputStore
from proxy.services import Services


def in_flight(cell: CellRecord | None, now: float) -> bool:
    """Whether ``cell`` runs under a live claim (its outputs may be on their way)."""
    return cell is not None and cell.state == "running" and (cell.lease_until or 0) > now


def uncommitted(cells: list[CellRecord], objects: list[tuple[str, int]], now: float) -> list[str]:
    """The objects of cells neither done nor in flight: those whose metadata is needed."""
    by_file = {str(c.spec.get("file")): c for c in cells}
    keys = []
    for key, _size in objects:
        cell = by_file.get(key.rsplit("/", 1)[-1])
        if cell is not None and cell.state != "done" and not in_flight(cell, now):
            keys.append(key)
    return keys


def classify(
    job: JobRecord,
    cells: list[CellRecord],
    objects: list[tuple[str, int]],
    unfinished: list[tuple[str, str]],
    now: float,
    metadata_of: dict[str, dict[str, str]],
) -> list[Orphan]:
    """The orphans among a job's ``objects`` and ``unfinished`` uploads."""
    by_file = {str(c.spec.get("file")): c for c in cells}
    ended = job.state in ENDED
    orphans = []
    for key, size in objects:
        metadata = metadata_of.get(key, {})
        cell = by_file.get(key.rsplit("/", 1)[-1])
        if cell is None:
            orphans.append(Orphan(key=key, reason="no cell of this job has this name"))
        elif cell.state == "done":
            if cell.output != key or cell.bytes != size:
                orphans.append(Orphan(
                    key=key, reason=f"{size} bytes, its done cell recorded {cell.bytes}",
                ))  # fmt: skip
        elif not in_flight(cell, now):
            attempt = metadata.get("attempt", "?")
            orphans.append(Orphan(
                key=key, adoptable=not ended and metadata.get("job", job.id) == job.id,
                reason=f"published by attempt {attempt}, never recorded (cell {cell.state}, "
                f"job {job.state})",
            ))  # fmt: skip
    for key, upload_id in unfinished:
        name = key.rsplit("/", 1)[-1].lstrip(".").split(".tif")[0] + ".tif"
        if not in_flight(by_file.get(name), now):
            orphans.append(Orphan(key=key, reason="unfinished upload", upload_id=upload_id))
    return orphans


async def find_orphans(services: Services, job_id: str, store: OutputStore) -> list[Orphan]:
    """The orphans of job ``job_id`` in ``store`` (none for a job of another kind)."""
    job = await services.catalog.jobs.get(job_id)
    outputs = outputs_of(job) if job is not None else None
    if job is None or outputs is None:
        return []
    folder = str(outputs["folder"])
    loop = asyncio.get_running_loop()
    # Listed before the cells are read: an output published after the listing is not
    # seen, and a cell read as not running cannot be claimed for an older listing entry.
    objects = await loop.run_in_executor(services.executor, store.list_outputs, folder)
    unfinished = await loop.run_in_executor(services.executor, store.list_unfinished, folder)
    cells = await services.catalog.cells.of_job(job_id)
    now = time.time()
    metadata_of = {}  # read only where needed: a HEAD per object of thousands would be slow
    for key in uncommitted(cells, objects, now):
        metadata_of[key] = await loop.run_in_executor(services.executor, store.metadata, key)
    return classify(job, cells, objects, unfinished, now, metadata_of)


async def cleanup(services: Services, job_id: str, store: OutputStore) -> list[Orphan]:
    """Remove the job's garbage orphans (not the adoptable ones); those removed."""
    orphans = await find_orphans(services, job_id, store)
    doomed = [o for o in orphans if not o.adoptable]
    loop = asyncio.get_running_loop()
    for orphan in doomed:
        await loop.run_in_executor(services.executor, store.remove, orphan)
    return doomed
