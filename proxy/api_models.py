"""Request and response bodies of the HTTP API that are not server configs.

Request models here validate what handlers read (``ProbeAsk``); response models describe
what handlers answer. Both feed the OpenAPI document (:mod:`proxy.openapi`), so the
document and the validation cannot drift apart. Server configs are :mod:`proxy.schemas`.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from proxy.errors import InvalidInput
from proxy.http import json_object
from proxy.tokens import MAX_TTL as MAX_TOKEN_TTL
from proxy.upstream.registry import SOURCE_TYPES

# One server config, any type: the union of every registered type's schema, told apart by
# ``type``. Built from the registry, so a new type shows up here by itself.
ServerConfigBody: Any = Annotated[
    reduce(or_, (kind.schema for kind in SOURCE_TYPES.values())),
    Field(discriminator="type", title="ServerConfig"),
]

# Where a request body is a server config that the handler validates itself (so that an
# invalid one becomes findings, or is merged first), the document still points at the schema.
RawServerConfig = Annotated[
    dict[str, Any],
    PlainValidator(lambda v: json_object(v, "server"), json_schema_input_type=ServerConfigBody),
]


class ProbeAsk(BaseModel):
    """Where and how to test a connection; what is omitted comes from the config or settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lat: float | None = Field(default=None, ge=-85.05, le=85.05, description="WGS84 degrees")
    lon: float | None = Field(default=None, ge=-180, le=180, description="WGS84 degrees")
    resolution: float | None = Field(default=None, gt=0, le=100_000, description="m/px")
    size: int | None = Field(default=None, ge=16, le=2048, description="preview size, px")
    format: Literal["auto", "png", "jpeg", "webp"] | None = Field(
        default=None,
        description="preview format; auto (the default): JPEG when opaque, PNG with transparency",
    )


class ProbeUnsaved(ProbeAsk):
    """Test an unsaved config: the config, and where and how to test it."""

    server: RawServerConfig


class ConfigChanges(BaseModel):
    """Fields of a server config to change; the result must be a valid config.

    Secrets sent back masked (``***``) keep their stored value.
    """

    model_config = ConfigDict(extra="allow")


def validate_body(model: type[BaseModel], data: Any) -> Any:
    """``data`` validated by ``model``; every problem becomes one :class:`InvalidInput`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise InvalidInput(f"invalid request: {message}", errors=details) from None


# ---- responses -------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong (SPEC §7); some errors add fields, e.g. ``suggested_resolution``."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable, machine-readable")
    message: str
    hint: str | None = Field(default=None, description="what to do about it")


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "hint"}}``."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


class Status(BaseModel):
    """Health or readiness."""

    status: str


class ServerView(BaseModel):
    """A stored server: its config with every secret masked, its id and timestamps."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    name: str
    url: str
    created_at: str
    updated_at: str


class ServerList(BaseModel):
    """Every stored server."""

    servers: list[ServerView]


class Finding(BaseModel):
    """Something a test connection noticed, with what to do about it."""

    code: str
    severity: str = Field(description="error, warning or info")
    message: str
    hint: str | None = None


class Preview(BaseModel):
    """The preview image, base64-encoded."""

    media_type: str
    base64: str


class DetectAsk(BaseModel):
    """A pasted URL, and any config fields already known (``type`` is guessed when absent)."""

    model_config = ConfigDict(extra="allow")

    url: str = Field(description="any URL of the server: a tile, a GetMap, an export, ...")
    type: str | None = None


class DetectAnswer(BaseModel):
    """The config a pasted URL would create (secrets masked; nothing is stored)."""

    config: ServerView | dict[str, Any]
    findings: list[Finding]


class ProbeAnswer(BaseModel):
    """A test connection that made a preview; the upstream requests are in ``diagnostics``."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    lat: float
    lon: float
    resolution: float
    zoom: int | None
    preview: Preview
    findings: list[Finding]
    diagnostics: dict[str, Any]


class Capabilities(BaseModel):
    """What an upstream offers: layers, styles, formats, CRSs, grids (varies by type)."""

    model_config = ConfigDict(extra="allow")


# ---- tiles ---------------------------------------------------------------------------


class TileTokenAsk(BaseModel):
    """How long a tile token lives."""

    model_config = ConfigDict(extra="forbid")

    ttl: int = Field(default=86_400, ge=60, le=MAX_TOKEN_TTL, description="seconds")


class TileToken(BaseModel):
    """A tile token for one server, and the URLs that carry it."""

    server_id: str
    token: str
    expires_at: int = Field(description="epoch seconds")
    tilejson: str
    tiles: str


class TileJSON(BaseModel):
    """A TileJSON 3.0.0 document (https://github.com/mapbox/tilejson-spec)."""

    model_config = ConfigDict(extra="allow")

    tilejson: str
    tiles: list[str]
    minzoom: int
    maxzoom: int
    bounds: list[float]
    center: list[float]


class CacheView(BaseModel):
    """A server's cached entries, and how its tile answers were served (this process)."""

    server_id: str
    entries: int
    bytes: int
    memory_entries: int
    memory_bytes: int
    hits: int
    misses: int
    stale: int
    hit_ratio: float | None


class CacheDeleted(BaseModel):
    """What a cache deletion removed from disk."""

    server_id: str
    deleted_entries: int
    deleted_bytes: int


# ---- imports and streaming images ----------------------------------------------------


class ImportAsk(BaseModel):
    """An import: a server, a name and AOIs; the grid's CRS and resolution (SPEC §4)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    server_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    aois: dict[str, Any] = Field(
        description="GeoJSON geometry, Feature or FeatureCollection of (multi)polygons, "
        "RFC 7946 lon/lat"
    )
    method: Literal["streaming", "download"] = Field(
        default="streaming",
        description="streaming: an image read on demand; download: the image and a job "
        "materializing it into Cloud-Optimized GeoTIFFs (202)",
    )
    resolution: float | None = Field(
        default=None, gt=0, le=100_000, description="m/px; default: the server's"
    )
    crs: str | None = Field(
        default=None,
        max_length=4096,
        description="default EPSG:3857; any EPSG code or WKT, or utm (the AOI centre's zone)",
    )
    require_quota: bool = Field(
        default=False,
        description="refuse (409 quota_insufficient) when the plan's upstream requests or "
        "bytes do not fit what the server's quota has left",
    )
    max_cell_pixels: int | None = Field(
        default=None, ge=1, le=10**9, description="download cells' size; default: the setting"
    )
    compression: Literal["jpeg", "webp", "deflate", "lzw", "zstd"] | None = Field(
        default=None, description="download: the GeoTIFFs' compression (default deflate)"
    )


class CellPlan(BaseModel):
    """The cells a download would make."""

    model_config = ConfigDict(extra="allow")

    max_cell_pixels: int
    count: int
    items: list[Any]


class ImportPlan(BaseModel):
    """What an import would make, before anything starts."""

    model_config = ConfigDict(extra="allow")

    server_id: str
    name: str
    method: str
    crs: str
    transform: list[float] = Field(description="a, b, c, d, e, f (rasterio's affine order)")
    width: int
    height: int
    pixels: int
    resolution: float
    zoom: int | None = Field(description="the matrix a full-resolution read uses")
    ground_resolution: float | None
    requests: int = Field(description="upstream requests of a full read")
    bytes: int = Field(description="estimated upstream bytes of a full read")
    cells: CellPlan


class ImageView(BaseModel):
    """A streaming image: its grid, bands, resolution, server and AOIs."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    server_id: str
    crs: str
    transform: list[float]
    bounds: list[float]
    width: int
    height: int
    bands: int
    dtype: str
    resolution: float
    aois: dict[str, Any]
    created_at: str


class ImageList(BaseModel):
    """Every streaming image."""

    images: list[ImageView]
