"""Request and answer bodies of the jobs API (SPEC §6; a contract with the console).

They feed the OpenAPI document through the route table, like :mod:`proxy.api_models`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.api_models import ImageView

Compression = Literal["jpeg", "webp", "deflate", "lzw", "zstd"]


class JobCells(BaseModel):
    """A job's cells per state."""

    pending: int
    running: int
    done: int
    failed: int


class JobRate(BaseModel):
    """Cells and bytes per second since the job started."""

    cells_per_s: float
    bytes_per_s: float


class JobPause(BaseModel):
    """Why and until when a job waits (an upstream quota)."""

    reason: str
    until: str
    message: str


class JobOutputs(BaseModel):
    """Where a job's outputs are, relative to the outputs folder."""

    model_config = ConfigDict(extra="allow")

    folder: str
    stac: str | None


class JobLinks(BaseModel):
    """The job's own URLs."""

    self: str
    cells: str
    events: str


class JobView(BaseModel):
    """A job: its state, cells per state, bytes, upstream requests, rate and ETA."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    state: Literal["pending", "running", "paused", "done", "failed", "cancelled"]
    name: str
    server_id: str
    image_id: str | None
    params: dict[str, Any]
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    cells_total: int
    cells: JobCells
    bytes_written: int
    upstream_requests: int
    rate: JobRate
    eta_seconds: float | None
    paused: JobPause | None
    outputs: JobOutputs | None
    links: JobLinks


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobView]


class CellsGeoJSON(BaseModel):
    """The cells of a job as a GeoJSON FeatureCollection (lon/lat) with their states."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]


class MaterializeAsk(BaseModel):
    """A materialization of a streaming image into Cloud-Optimized GeoTIFFs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_cell_pixels: int | None = Field(
        default=None, ge=256, le=65_536, description="cells' largest side, px; default: setting"
    )
    compression: Compression = "deflate"
    detector_resolution: float | None = Field(
        default=None, gt=0, le=100_000, description="m/px: the resolution guard (SPEC §5)"
    )
    require_quota: bool = Field(
        default=False,
        description="refuse (409 quota_insufficient) when the materialization would not fit "
        "what remains of the server's quota",
    )


class SeedAsk(BaseModel):
    """A cache seeding of a server over AOIs and a zoom range."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    aois: dict[str, Any] = Field(description="GeoJSON (multi)polygons, RFC 7946 lon/lat")
    min_zoom: int = Field(ge=0, le=24)
    max_zoom: int = Field(ge=0, le=24)


class ImportStarted(BaseModel):
    """A download import: its image and the job materializing it."""

    image: ImageView
    job: JobView
