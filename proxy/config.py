"""Settings: embedded defaults, then an optional TOML file, then ``IMAGERY_PROXY_*`` variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from streaming import codecs
from streaming.reader import ReadLimits

ENV_PREFIX = "IMAGERY_PROXY_"
DEFAULT_JOB_SLOTS = 2  # cells a process runs at once unless job_workers says
# The library's read budgets are the service's defaults: one source of truth.
READ_DEFAULTS = ReadLimits()


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _bool(value: Any) -> bool:
    """A TOML bool, or an environment string: true/false, 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@attrs.frozen(kw_only=True)
class Settings:
    """Everything configurable, with defaults that run with no config at all."""

    data_dir: Path = attrs.field(default=Path("data"), converter=Path)
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8080, converter=int)
    # API keys; when none is configured one is generated into data_dir/api-key.
    api_keys: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    # Networks (CIDR) that upstream URLs may reach although private or loopback (SPEC §8).
    allowed_networks: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    executor_workers: int = attrs.field(default=4, converter=int)
    upstream_timeout: float = attrs.field(default=30.0, converter=float)
    upstream_connect_timeout: float = attrs.field(default=10.0, converter=float)
    upstream_retries: int = attrs.field(default=2, converter=int)
    upstream_backoff: float = attrs.field(default=0.25, converter=float)
    breaker_threshold: int = attrs.field(default=5, converter=int)
    breaker_cooldown: float = attrs.field(default=30.0, converter=float)
    upstream_max_bytes: int = attrs.field(default=64 * 1024 * 1024, converter=int)
    upstream_connections: int = attrs.field(default=100, converter=int)
    max_image_pixels: int = attrs.field(default=READ_DEFAULTS.max_image_pixels, converter=int)
    max_read_pixels: int = attrs.field(default=READ_DEFAULTS.max_pixels, converter=int)
    max_read_requests: int = attrs.field(default=READ_DEFAULTS.max_requests, converter=int)
    preview_size: int = attrs.field(default=512, converter=int)
    capabilities_ttl: float = attrs.field(default=300.0, converter=float)
    # Bounds of one capabilities document, and of the parsed documents kept in memory
    # (weighed by their document's bytes).
    capabilities_max_bytes: int = attrs.field(default=16 * 1024 * 1024, converter=int)
    capabilities_max_layers: int = attrs.field(default=10_000, converter=int)
    capabilities_parse_timeout: float = attrs.field(default=20.0, converter=float)
    capabilities_cache_bytes: int = attrs.field(default=64 * 1024 * 1024, converter=int)
    log_level: str = "INFO"
    # Tile cache (proxy/cache/tiles.py): byte bounds of its tiers, lifetime of no-data answers.
    cache_memory_bytes: int = attrs.field(default=256 * 1024 * 1024, converter=int)
    decoded_cache_bytes: int = attrs.field(default=128 * 1024 * 1024, converter=int)
    cache_disk_bytes: int = attrs.field(default=10 * 1024**3, converter=int)
    negative_ttl: float = attrs.field(default=60.0, converter=float)
    # Processes of `imagery-proxy serve`, sharing the port (SO_REUSEPORT).
    workers: int = attrs.field(default=1, converter=int)
    # GET /metrics answers without an API key (for a Prometheus on a trusted network).
    metrics_public: bool = attrs.field(default=False, converter=_bool)
    # Tiles of wms/arcgis-export servers: one request per meta_tiles x meta_tiles block,
    # with meta_buffer px around it (proxy/tiles/metatiles.py).
    meta_tiles: int = attrs.field(
        default=4, converter=int, validator=[attrs.validators.ge(1), attrs.validators.le(16)]
    )
    meta_buffer: int = attrs.field(
        default=16, converter=int, validator=[attrs.validators.ge(0), attrs.validators.le(256)]
    )
    # Honour X-Forwarded-Proto/Host in TileJSON URLs: only behind a proxy that sets them.
    trust_forwarded: bool = attrs.field(default=False, converter=_bool)
    # Resolution guard (SPEC §5): a read finer than detector_resolution / guard_max_ratio
    # is refused (409 resolution_too_high).
    guard_max_ratio: float = attrs.field(
        default=2.0, converter=float, validator=attrs.validators.gt(0)
    )
    # Largest cell (px) a download import would split an image into (the plan reports them).
    max_cell_pixels: int = attrs.field(
        default=10_000, converter=int, validator=attrs.validators.ge(1)
    )
    # Lifetime of the tile token written into /images/{id}/gdal.xml (seconds).
    image_token_ttl: int = attrs.field(
        default=7 * 86_400, converter=int, validator=attrs.validators.ge(60)
    )
    # Encoding of previews and image reads (streaming/codecs.py): JPEG quality (1-95), PNG
    # zlib level (0-9; 1 is ~5x faster than 6 on imagery, for ~15 % more bytes), WebP quality.
    jpeg_quality: int = attrs.field(
        default=codecs.JPEG_QUALITY, converter=int, validator=attrs.validators.in_(range(1, 101))
    )
    png_compression: int = attrs.field(
        default=codecs.PNG_COMPRESSION, converter=int, validator=attrs.validators.in_(range(10))
    )
    webp_quality: int = attrs.field(
        default=codecs.WEBP_QUALITY, converter=int, validator=attrs.validators.in_(range(101))
    )
    # Jobs (SPEC §6): cells run at once per process (0: this process runs no job), the
    # share of a server's max_concurrency jobs may take, where outputs land (default
    # data_dir/outputs), and the claim lease a running cell renews every heartbeat.
    # None: the default for the process (see ``serve_job_slots`` and ``worker_job_slots``).
    job_workers: int | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(int),
        validator=attrs.validators.optional(attrs.validators.ge(0)),
    )
    job_upstream_share: float = attrs.field(
        default=0.5, converter=float, validator=[attrs.validators.gt(0), attrs.validators.le(1)]
    )
    outputs_dir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    job_lease_seconds: float = attrs.field(
        default=30.0, converter=float, validator=attrs.validators.gt(0)
    )
    job_heartbeat_seconds: float = attrs.field(
        default=10.0, converter=float, validator=attrs.validators.gt(0)
    )
    # How often a running cell checks it still holds its claim (a cancel from another
    # process stops it within this), and an idle runner looks for work.
    job_poll_seconds: float = attrs.field(
        default=1.0, converter=float, validator=attrs.validators.gt(0)
    )

    @property
    def outputs_root(self) -> Path:
        """The folder job outputs land in."""
        return self.outputs_dir if self.outputs_dir is not None else self.data_dir / "outputs"

    # Shared tile tier (proxy/cache/redis.py): "" keeps the cache local (memory over disk);
    # redis://host:port/db (or rediss://, unix://) puts Redis under each replica's memory.
    cache_url: str = attrs.field(default="", validator=lambda _i, _a, v: _cache_url(v))
    # Prepended to every Redis key: several installations can share one Redis.
    cache_prefix: str = "imagery-proxy:"
    # One Redis command's deadline (a slower answer is a miss), its connection's, and one
    # SCAN page's (purges and stats).
    redis_timeout: float = attrs.field(default=0.1, converter=float)
    redis_connect_timeout: float = attrs.field(default=0.1, converter=float)
    redis_bulk_timeout: float = attrs.field(default=2.0, converter=float)
    # Failures in a row that stop Redis commands, and the wait before one trial command.
    redis_breaker_threshold: int = attrs.field(default=5, converter=int)
    redis_breaker_cooldown: float = attrs.field(default=1.0, converter=float)
    # Lease of a cross-replica fetch lock (renewed while the fetch runs; a dead owner's
    # lock frees after it), and how long entries stay in Redis past their TTL for
    # revalidation and stale-if-error.
    redis_lock_lease: float = attrs.field(default=5.0, converter=float)
    cache_stale_grace: float = attrs.field(default=86_400.0, converter=float)
    # The catalog (proxy/catalog/): "" is the SQLite file data_dir/catalog.sqlite;
    # postgresql://user:password@host:port/db shares one PostgreSQL between replicas.
    catalog_url: str = attrs.field(default="", validator=lambda _i, _a, v: _catalog_url(v))
    # Who runs job cells (proxy/jobs/worker.py): "inline" is the runner inside each `serve`
    # (job_workers cells at once, default 2); "postgres" is `imagery-proxy worker` processes
    # claiming cells from the PostgreSQL catalog, woken by LISTEN/NOTIFY; there a serving
    # replica runs cells only when job_workers is set (in the file or the environment).
    jobs: str = attrs.field(
        default="inline", validator=attrs.validators.in_(("inline", "postgres"))
    )
    # How often an idle runner looks for work when nothing wakes it: under jobs = postgres a
    # NOTIFY wakes it at once, so this is only the fallback for a lost notification.
    job_idle_poll_seconds: float = attrs.field(
        default=15.0, converter=float, validator=attrs.validators.gt(0)
    )

    # Where job outputs land (proxy/outputs/): "" is the outputs folder on local disk
    # (outputs_dir), s3://bucket/prefix an S3-compatible store: each cell's COG is written
    # and validated locally, then uploaded create-only (If-None-Match: *, or with
    # s3_conditional_writes = false a HEAD-then-put for stores without it).
    output_url: str = attrs.field(default="", validator=lambda _i, _a, v: _output_url(v))
    s3_endpoint_url: str = ""  # "" is AWS; e.g. http://minio:9000
    s3_region: str = ""
    # Credentials: "" falls back to boto3's chain (AWS_ACCESS_KEY_ID... , profiles, roles).
    # Never shown: repr=False keeps them out of logs and reprs.
    s3_access_key_id: str = attrs.field(default="", repr=False)
    s3_secret_access_key: str = attrs.field(default="", repr=False)
    s3_conditional_writes: bool = attrs.field(default=True, converter=_bool)
    # Files above this are sent in parts of this size (boto3's managed transfer), with at
    # most s3_upload_concurrency parts in flight: memory ~ chunk x concurrency per upload.
    s3_multipart_bytes: int = attrs.field(
        default=16 * 1024 * 1024, converter=int, validator=attrs.validators.ge(5 * 1024 * 1024)
    )
    s3_upload_concurrency: int = attrs.field(
        default=4, converter=int, validator=attrs.validators.ge(1)
    )

    @property
    def encode_options(self) -> dict[str, int]:
        """Keyword arguments of :func:`streaming.codecs.encode` from these settings."""
        return {
            "jpeg_quality": self.jpeg_quality,
            "png_compression": self.png_compression,
            "webp_quality": self.webp_quality,
        }

    @property
    def serve_job_slots(self) -> int:
        """Cells a ``serve`` process runs at once: 2 by default inline, 0 under postgres."""
        if self.job_workers is not None:
            return self.job_workers
        return DEFAULT_JOB_SLOTS if self.jobs == "inline" else 0

    @property
    def worker_job_slots(self) -> int:
        """Cells an ``imagery-proxy worker`` (or ``jobs run``) runs at once: at least 1."""
        return max(1, DEFAULT_JOB_SLOTS if self.job_workers is None else self.job_workers)

    @property
    def catalog_path(self) -> Path:
        """The SQLite catalog file."""
        return self.data_dir / "catalog.sqlite"

    def backends(self) -> dict[str, str]:
        """Which implementation serves each backend (``/ready``'s ``using``, ``/metrics``)."""
        return {
            "catalog": "postgresql" if self.catalog_url else "sqlite",
            "cache": "redis" if self.cache_url else "local",
            "jobs": self.jobs,
            "outputs": "s3" if self.output_url else "local",
        }


def _catalog_url(value: str) -> None:
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("catalog_url is empty (the SQLite file) or a postgresql:// URL")


def _cache_url(value: str) -> None:
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("cache_url is empty (local cache) or a redis://, rediss:// or unix:// URL")


def _output_url(value: str) -> None:
    if value and not (value.startswith("s3://") and len(value) > len("s3://")):
        raise ValueError("output_url is empty (the outputs folder) or s3://bucket[/prefix]")


FIELDS = {f.name for f in attrs.fields(Settings)}


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build settings from defaults, the TOML file at ``path``, the environment, then overrides.

    The file may also be named by ``IMAGERY_PROXY_CONFIG``. Unknown keys are an error, so
    a typo never silently falls back to a default.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = path or (Path(env[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in env else None)
    if path is not None:
        with path.open("rb") as fh:
            values.update(tomllib.load(fh))
    for key, value in env.items():
        name = key[len(ENV_PREFIX) :].lower()
        if key.startswith(ENV_PREFIX) and name in FIELDS:
            values[name] = value
    values.update(overrides)
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Settings(**values)
