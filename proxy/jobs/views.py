"""The JSON of jobs and of their cells, as the jobs API answers them (a fixed contract)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from proxy.catalog.base import ENDED, CellRecord, JobRecord
from proxy.jobs.outputs import job_folder_name

COLLECTION = "collection.json"  # proxy.jobs.stac.COLLECTION (that module loads rasterio)


def iso(seconds: float) -> str:
    """Unix seconds as the catalog's ISO text."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def job_view(job: JobRecord, live_bytes: int = 0, now: float | None = None) -> dict[str, Any]:
    """GET /jobs/{id}: the job, its cells per state, bytes, requests, rate and ETA.

    ``live_bytes`` are bytes running cells of this process wrote so far (their cells count
    their bytes only once done).
    """
    now = time.time() if now is None else now
    cells = job.cells
    written = job.bytes_written + live_bytes
    rate = {"cells_per_s": 0.0, "bytes_per_s": 0.0}
    eta: float | None = None
    if job.started_at is not None:
        end = _seconds(job.finished_at) if job.finished_at else now
        elapsed = max(end - _seconds(job.started_at), 1e-3)
        rate = {"cells_per_s": cells.done / elapsed, "bytes_per_s": written / elapsed}
        left = cells.pending + cells.running
        if job.state not in ENDED and rate["cells_per_s"] > 0:
            eta = left / rate["cells_per_s"]
    paused = None
    if job.state == "paused" and job.paused_until is not None:
        paused = {
            "reason": job.paused_reason or "quota",
            "until": iso(job.paused_until),
            "message": job.paused_message or "",
        }
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "name": job.name,
        "server_id": job.server_id,
        "image_id": job.image_id,
        "params": job.params,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cells_total": cells.total,
        "cells": {
            "pending": cells.pending,
            "running": cells.running,
            "done": cells.done,
            "failed": cells.failed,
        },
        "bytes_written": written,
        "upstream_requests": job.upstream_requests,
        "rate": rate,
        "eta_seconds": eta,
        "paused": paused,
        "outputs": outputs_of(job),
        "error": job.error,
        "links": {
            "self": f"/jobs/{job.id}",
            "cells": f"/jobs/{job.id}/cells.geojson",
            "events": f"/jobs/{job.id}/events",
        },
    }


def outputs_of(job: JobRecord) -> dict[str, Any] | None:
    """Where the job's outputs are, relative to the outputs folder (materialize jobs).

    The folder is named from the image's name (the job's) and the job id; the STAC
    Collection is there once the job's end ran (done, or failed cells but an end that ran).
    """
    if job.outputs is not None:
        return job.outputs
    if job.kind != "materialize":
        return None
    folder = job_folder_name(job.name, job.id)
    ended = job.state == "done" or (job.state == "failed" and job.error is None)
    return {"folder": folder, "stac": f"{folder}/{COLLECTION}" if ended else None}


def cell_feature(cell: CellRecord) -> dict[str, Any]:
    """One cell as a GeoJSON Feature of the progress grid."""
    return {
        "type": "Feature",
        "geometry": cell.polygon,
        "properties": {
            "index": cell.index,
            "state": cell.state,
            "error": cell.error,
            "attempt": cell.attempt,
            "output": cell.output,
            "bytes": cell.bytes,
        },
    }


def cells_geojson(cells: list[CellRecord]) -> dict[str, Any]:
    """GET /jobs/{id}/cells.geojson."""
    return {"type": "FeatureCollection", "features": [cell_feature(c) for c in cells]}
