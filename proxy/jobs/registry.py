"""The kinds of job this release runs, by name (the runner and job creation read it).

The kinds are imported with the app, not when it starts: a worker of ``serve --workers N``
then binds its port as soon as its services are open.
"""

from __future__ import annotations

from proxy.jobs.kinds import JobKind
from proxy.jobs.materialize import MaterializeKind
from proxy.jobs.seed import SeedKind


def default_kinds() -> dict[str, JobKind]:
    """Every kind of job, by its name."""
    kinds: list[JobKind] = [MaterializeKind(), SeedKind()]
    return {kind.name: kind for kind in kinds}
