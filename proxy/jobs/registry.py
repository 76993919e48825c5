"""The kinds of job this release runs, by name (the runner and job creation read it)."""

from __future__ import annotations

from proxy.jobs.kinds import JobKind


def default_kinds() -> dict[str, JobKind]:
    """Every kind of job, by its name."""
    return {}
