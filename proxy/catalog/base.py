"""The catalog interface: one storage Protocol per kind of record, behind one facade.

SQLite implements them (``proxy.catalog.sqlite``, the embedded default), and so does
PostgreSQL (``proxy.catalog.postgres``, shared by several replicas); ``proxy.catalog.open``
picks one from the ``catalog_url`` setting and nothing above changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

import attrs


@attrs.frozen
class ServerRecord:
    """A stored server: its id, timestamps and full config (secrets included)."""

    id: str
    config: dict[str, Any]
    created_at: str
    updated_at: str


class ServerStore(Protocol):
    """Storage of imagery servers."""

    async def create(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server and return it with its new id."""

    async def get(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""

    async def all(self) -> list[ServerRecord]:
        """Every server, oldest first."""

    async def update(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config; ``None`` when there is no such server."""

    async def delete(self, server_id: str) -> bool:
        """Delete a server; ``False`` when there was none."""


@attrs.frozen(kw_only=True)
class ImageRecord:
    """A stored streaming image: its grid over a server, and its AOIs.

    ``crs`` is an ``EPSG:n`` string when the CRS has one, else WKT; ``transform`` holds the
    six affine coefficients ``a, b, c, d, e, f`` (rasterio's order); ``aois`` is a GeoJSON
    FeatureCollection in lon/lat.
    """

    id: str
    name: str
    server_id: str
    server_updated_at: str  # the server's version when the image was made
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    resolution_m: float
    aois: dict[str, Any]
    created_at: str


@attrs.frozen(kw_only=True)
class NewImage:
    """What makes an image (the store gives the id and the creation time)."""

    name: str
    server_id: str
    server_updated_at: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    resolution_m: float
    aois: dict[str, Any]

    def stored(self, image_id: str, created_at: str) -> ImageRecord:
        """The record of this image once stored under ``image_id`` (both stores' one way)."""
        return ImageRecord(id=image_id, created_at=created_at, **attrs.asdict(self, recurse=False))


class ImageStore(Protocol):
    """Storage of streaming images."""

    async def create(self, image: NewImage) -> ImageRecord:
        """Store a new image and return it with its new id."""

    async def get(self, image_id: str) -> ImageRecord | None:
        """The image with ``image_id``, or ``None``."""

    async def all(self) -> list[ImageRecord]:
        """Every image, oldest first."""

    async def delete(self, image_id: str) -> bool:
        """Delete an image; ``False`` when there was none."""


# ---- jobs and their cells (SPEC §6) --------------------------------------------------

JobState = Literal["pending", "running", "paused", "done", "failed", "cancelled"]
CellState = Literal["pending", "running", "done", "failed"]
ENDED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


@attrs.frozen(kw_only=True)
class NewJob:
    """What makes a job (the store gives the id, the state and the times)."""

    kind: str
    name: str
    server_id: str
    image_id: str | None
    params: dict[str, Any]
    outputs: dict[str, Any] | None = None  # {"folder", "stac"} relative to the outputs root


@attrs.frozen(kw_only=True)
class NewCell:
    """One planned cell of a new job."""

    index: int
    spec: dict[str, Any]
    polygon: dict[str, Any]


@attrs.frozen(kw_only=True)
class CellCounts:
    """A job's cells per state."""

    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        """Every cell."""
        return self.pending + self.running + self.done + self.failed


@attrs.frozen(kw_only=True)
class JobRecord:
    """A stored job with its cells' counters (summed by the store when read)."""

    id: str
    kind: str
    name: str
    server_id: str
    image_id: str | None
    params: dict[str, Any]
    state: JobState
    paused_until: float | None  # Unix seconds
    paused_reason: str | None
    paused_message: str | None
    outputs: dict[str, Any] | None
    error: str | None  # of the job's end (kind.finish), not of a cell
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    cells: CellCounts
    bytes_written: int
    upstream_requests: int


@attrs.frozen(kw_only=True)
class CellRecord:
    """One cell of a job as stored."""

    job_id: str
    index: int
    spec: dict[str, Any]
    polygon: dict[str, Any]
    state: CellState
    owner: str | None
    lease_until: float | None
    attempt: int
    error: str | None
    output: str | None
    bytes: int
    upstream_requests: int
    finished_at: str | None


@attrs.frozen(kw_only=True)
class Claim:
    """A cell claimed by one owner: ``attempt`` fences every later write of that claim."""

    job_id: str
    kind: str
    params: dict[str, Any]
    server_id: str
    index: int
    attempt: int
    spec: dict[str, Any]


class JobStore(Protocol):
    """Storage of jobs. Every operation is one short transaction, safe across processes.

    The same operations map onto PostgreSQL (``SELECT ... FOR UPDATE SKIP LOCKED`` for
    claims), so several replicas can share one queue.
    """

    async def create(self, job: NewJob, cells: Sequence[NewCell]) -> JobRecord:
        """Store a new job (state ``pending``) and all its cells (``pending``) at once."""

    async def get(self, job_id: str) -> JobRecord | None:
        """The job, with its counters; ``None`` when there is none."""

    async def recent(self, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first, optionally in one state."""

    async def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not ended; return the state it had (``None``: no job).

        Running cells go back to ``pending`` without an owner, so their attempts' writes
        are refused from then on.
        """

    async def retry(self, job_id: str) -> int | None:
        """Failed cells back to ``pending`` and the job runs again; how many (``None``: no job).

        A cancelled job resumes its unfinished cells too.
        """

    async def pause(self, job_id: str, until: float, reason: str, message: str) -> None:
        """No cell of the job is claimed before ``until`` (Unix seconds)."""

    async def finishable(self) -> list[str]:
        """Jobs not ended whose every cell is done or failed (their end is still to run)."""

    async def begin_finish(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the job's end (kind.finish) for ``owner``: ``True`` for one owner only."""

    async def end_finish(self, job_id: str, owner: str, error: str | None) -> str | None:
        """The job ends ``done`` or ``failed``; its final state (``None``: not ``owner``'s)."""

    async def count_by_state(self) -> dict[str, int]:
        """How many jobs in each state."""


class CellStore(Protocol):
    """Claims, leases and results of cells, fenced by ``attempt``."""

    async def claim(
        self,
        owner: str,
        lease_seconds: float,
        *,
        job_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> Claim | None:
        """Claim one cell (pending, or running with its lease expired), attempt + 1."""

    async def heartbeat(
        self, job_id: str, index: int, owner: str, attempt: int, lease_seconds: float
    ) -> bool:
        """Extend the lease of ``owner``'s claim; ``False`` when it is not theirs any more."""

    async def holds(self, job_id: str, index: int, owner: str, attempt: int) -> bool:
        """Whether ``owner``'s claim ``attempt`` still runs the cell (polled: a read)."""

    async def complete(
        self,
        job_id: str,
        index: int,
        attempt: int,
        *,
        output: str | None,
        bytes_written: int,
        upstream_requests: int,
    ) -> bool:
        """The claim ``attempt`` made its cell; ``False`` (nothing written) for a stale one."""

    async def fail(
        self, job_id: str, index: int, attempt: int, error: str, upstream_requests: int = 0
    ) -> bool:
        """The claim ``attempt`` failed with ``error``; ``False`` for a stale one."""

    async def release(self, job_id: str, index: int, attempt: int) -> bool:
        """Give a running claim back (``pending``), e.g. on a pause or a shutdown."""

    async def of_job(self, job_id: str) -> list[CellRecord]:
        """The job's cells by index."""

    async def running_owners(self) -> list[str]:
        """The owners of running cells."""

    async def release_owner(self, owner: str) -> int:
        """Give back every running cell of ``owner`` (known dead); how many."""


class Database(Protocol):
    """The connection every store of one catalog shares."""

    backend: str  # "sqlite" or "postgresql", as /ready reports it

    async def ping(self) -> None:
        """Raise when the database cannot answer (readiness)."""

    async def close(self) -> None:
        """Release the database."""


@attrs.frozen
class Catalog:
    """The service's state: one store per kind of record, over one database."""

    database: Database
    servers: ServerStore
    images: ImageStore
    jobs: JobStore
    cells: CellStore

    async def ping(self) -> None:
        """Raise when the catalog cannot answer (readiness)."""
        await self.database.ping()

    async def close(self) -> None:
        """Release the catalog."""
        await self.database.close()
