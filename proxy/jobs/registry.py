"""The kinds of job this release runs, by name (the runner and job creation read it)."""

from __future__ import annotations

from proxy.jobs.kinds import JobKind


def default_kinds() -> dict[str, JobKind]:
    """Every kind of job, by its name (imported on first use: the COG writer is heavy)."""
    from proxy.jobs.materialize import MaterializeKind

    kinds: list[JobKind] = [MaterializeKind()]
    return {kind.name: kind for kind in kinds}
