"""Who runs job cells (the ``jobs`` setting), and the create-only publication of a cell
file that keeps a late attempt from replacing the done one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import load_settings
from proxy.jobs.outputs import CellOutput

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("values", "serve", "worker"),
    [
        ({}, 2, 2),  # inline: serve runs jobs, as before
        ({"job_workers": 0}, 0, 1),
        ({"jobs": "postgres"}, 0, 2),  # postgres: serving replicas leave cells to workers
        ({"jobs": "postgres", "job_workers": 3}, 3, 3),  # unless told to run them
    ],
)
def test_which_processes_run_cells(values, serve, worker):
    settings = load_settings(env={}, **values)
    assert settings.serve_job_slots == serve
    assert settings.worker_job_slots == worker


def test_jobs_is_inline_or_postgres():
    with pytest.raises(ValueError, match="jobs"):
        load_settings(env={}, jobs="redis")


def test_jobs_postgres_without_a_postgresql_catalog_is_a_one_line_startup_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMAGERY_PROXY_JOBS": "postgres",
           "IMAGERY_PROXY_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "worker"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "imagery-proxy: cannot start: jobs = postgres needs the catalog on PostgreSQL: set "
        "catalog_url to a postgresql:// URL (or jobs = inline to run jobs inside serve)"
    ]


def test_a_late_attempt_never_replaces_the_published_file(tmp_path):
    first, late = CellOutput(tmp_path, "f_0.tif", 2), CellOutput(tmp_path, "f_0.tif", 1)
    first.prepare()
    late.part.write_bytes(b"late attempt, stopped past its lease")
    first.part.write_bytes(b"the attempt that holds the claim")
    assert first.commit() == len(b"the attempt that holds the claim")
    stamp = first.final.stat().st_mtime_ns
    assert late.commit() == len(b"the attempt that holds the claim")  # the file there stands
    assert first.final.read_bytes() == b"the attempt that holds the claim"
    assert first.final.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_0.tif"]  # no temporary left
