"""The contract between the job runner and the kinds of job it runs.

The runner (claims, leases, heartbeats, cancel, retry, resume, progress) knows nothing of
what a cell does; a kind (materialize, seed) knows nothing of leases. A kind plans a job's
cells once, when the job is created, as JSON specs the catalog keeps; then the runner hands
it one claimed cell at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from proxy.services import Services


@attrs.frozen(kw_only=True)
class PlannedCell:
    """One cell of a new job: what to do (``spec``, JSON) and where it lies (lon/lat)."""

    index: int
    spec: dict[str, Any]
    polygon: dict[str, Any]  # a GeoJSON Polygon in lon/lat, for the progress grid


@attrs.frozen(kw_only=True)
class CellWork:
    """One claimed cell handed to its kind.

    ``attempt`` is the fencing token of the claim: a kind that writes an output names its
    temporary file with it, so two attempts of one cell never write the same file.
    """

    job_id: str
    kind: str
    params: dict[str, Any]  # the job's parameters, as created (JSON)
    server_id: str
    index: int
    attempt: int
    spec: dict[str, Any]


@attrs.frozen(kw_only=True)
class CellDone:
    """What a finished cell produced."""

    bytes_written: int = 0
    upstream_requests: int = 0
    output: str | None = None  # the output's path relative to the outputs folder


class CellFailed(Exception):
    """The cell cannot be made (its area answers errors, the disk is full...): its error.

    The runner marks the cell ``failed`` with ``str(exc)``; other cells go on.
    """


class JobKind(Protocol):
    """A kind of job: materialize (cells -> COGs) or seed (tiles -> cache)."""

    name: str

    async def plan(self, services: Services, params: dict[str, Any]) -> list[PlannedCell]:
        """The cells of a new job (validates ``params``; raises a ProxyError when bad)."""

    async def run_cell(
        self, services: Services, work: CellWork, progress: Callable[[int], None]
    ) -> CellDone:
        """Make one cell; ``progress(n)`` reports ``n`` more bytes written (for rate/ETA).

        Cancellation (``asyncio.CancelledError``) must leave no temporary file behind.
        Past a server quota, :class:`streaming.errors.SourceQuotaExceeded` propagates: the
        runner pauses the job until the quota resets and the cell runs again then.
        """

    async def finish(self, services: Services, job_id: str, params: dict[str, Any]) -> None:
        """Called once every cell is done (e.g. write the STAC Collection)."""
