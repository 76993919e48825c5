"""The jobs commands of the CLI: list, show, watch, cancel, retry (on the catalog itself)."""

from __future__ import annotations

import asyncio

import orjson

from proxy.catalog.base import NewCell, NewJob
from proxy.cli import main
from proxy.cli_jobs import human_bytes, status_line
from proxy.config import load_settings
from proxy.services import open_services

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def store_job(data_dir, cells: int = 2, fail: bool = False) -> str:
    """A job of ``cells`` cells; with ``fail``, cell 0 failed and the others done."""

    async def run() -> str:
        async with open_services(load_settings(env={}, data_dir=data_dir)) as services:
            catalog = services.catalog
            job = NewJob(kind="tiles", name="field", server_id="s1", image_id=None, params={})
            new = [NewCell(index=i, spec={}, polygon=SQUARE) for i in range(cells)]
            record = await catalog.jobs.create(job, new)
            if fail:
                for _ in range(cells):
                    claim = await catalog.cells.claim("cli-test", 30)
                    assert claim is not None
                    if claim.index == 0:
                        await catalog.cells.fail(record.id, 0, claim.attempt, "disk full")
                    else:
                        await catalog.cells.complete(
                            record.id,
                            claim.index,
                            claim.attempt,
                            output=None,
                            bytes_written=1500,
                            upstream_requests=1,
                        )
                assert await catalog.jobs.begin_finish(record.id, "cli-test", 30)
                await catalog.jobs.end_finish(record.id, "cli-test", None)
            return record.id

    return asyncio.run(run())


def run_json(capsys, *argv: str):
    status = main(list(argv))
    return status, orjson.loads(capsys.readouterr().out)


def test_jobs_list_and_show(tmp_path, capsys):
    job_id = store_job(tmp_path)
    status, views = run_json(capsys, "--data-dir", str(tmp_path), "jobs", "list", "--json")
    assert status == 0 and [(v["id"], v["state"], v["cells_total"]) for v in views] == [
        (job_id, "pending", 2)
    ]
    assert main(["--data-dir", str(tmp_path), "jobs", "list"]) == 0
    table = capsys.readouterr().out
    assert job_id in table and "0/2" in table and "field" in table
    status, view = run_json(capsys, "--data-dir", str(tmp_path), "jobs", "show", job_id)
    assert status == 0 and view["id"] == job_id and view["links"]["self"] == f"/jobs/{job_id}"


def test_jobs_cancel_then_retry_resumes_it(tmp_path, capsys):
    job_id = store_job(tmp_path)
    status, view = run_json(capsys, "--data-dir", str(tmp_path), "jobs", "cancel", job_id)
    assert status == 0 and view["state"] == "cancelled"
    status, view = run_json(capsys, "--data-dir", str(tmp_path), "jobs", "retry", job_id)
    assert status == 0 and view["state"] == "pending"


def test_jobs_retry_of_a_failed_job_and_errors(tmp_path, capsys):
    job_id = store_job(tmp_path, cells=3, fail=True)
    assert main(["--data-dir", str(tmp_path), "jobs", "watch", job_id]) == 1
    out, err = capsys.readouterr()
    view = orjson.loads(out)
    assert view["state"] == "failed" and view["cells"]["failed"] == 1
    assert f"job {job_id} ended failed" in err and "2/3 cells" in err and "1 failed" in err
    assert main(["--data-dir", str(tmp_path), "jobs", "cancel", job_id]) == 1
    assert "job_finished" in capsys.readouterr().err
    status, view = run_json(capsys, "--data-dir", str(tmp_path), "jobs", "retry", job_id)
    assert status == 0 and view["cells"]["pending"] == 1 and view["cells"]["done"] == 2
    assert main(["--data-dir", str(tmp_path), "jobs", "show", "nope"]) == 1
    assert '"not_found"' in capsys.readouterr().err


def test_the_progress_line_says_cells_bytes_rate_and_eta():
    view = {
        "cells": {"pending": 6, "running": 1, "done": 3, "failed": 0},
        "cells_total": 10,
        "bytes_written": 12_500_000,
        "rate": {"cells_per_s": 0.1, "bytes_per_s": 2_100_000.0},
        "eta_seconds": 70.0,
        "state": "running",
        "paused": None,
    }
    assert status_line(view) == "3/10 cells · 12.5 MB · 2.1 MB/s · ETA 70 s · running"
    assert human_bytes(999) == "999 B" and human_bytes(1_000) == "1.0 kB"
