"""The service's long-lived resources, opened and closed together (app and CLI share them)."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import attrs

from proxy.cache.keys import Fingerprints
from proxy.cache.redis import RedisTier
from proxy.cache.sources import OpenSources
from proxy.cache.tiles import TileCache
from proxy.catalog.base import Catalog
from proxy.catalog.open import open_catalog_at
from proxy.config import Settings
from proxy.errors import StartupError
from proxy.metrics import Metrics, RedisMetrics
from proxy.net.client import UpstreamClient
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy
from proxy.quota.enforce import Quotas
from proxy.tiles.service import TileService
from proxy.tokens import TileTokens
from proxy.upstream.base import CapabilitiesLimits, UpstreamContext
from streaming.decoded import DecodedTiles
from streaming.reader import ReadLimits

log = logging.getLogger(__name__)


@attrs.frozen
class Services:
    """Everything a handler or a CLI command needs."""

    settings: Settings
    catalog: Catalog
    upstream: UpstreamContext
    executor: ThreadPoolExecutor
    api_keys: frozenset[str]
    sources: OpenSources
    metrics: Metrics
    tile_cache: TileCache
    tokens: TileTokens
    tiles: TileService
    quotas: Quotas

    @property
    def read_limits(self) -> ReadLimits:
        """Budgets of one read, from the settings."""
        return read_limits(self.settings)


def read_limits(settings: Settings) -> ReadLimits:
    """Budgets of one read, from ``settings``."""
    return ReadLimits(
        max_pixels=settings.max_read_pixels,
        max_requests=settings.max_read_requests,
        max_image_pixels=settings.max_image_pixels,
        # The server's own max_concurrency (ServerLimits) is the cap that matters: a second,
        # lower cap per read would leave a server allowed 64 connections using 8.
        concurrency=settings.max_read_requests,
    )


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the catalog, the executor and the upstream client; close them on exit."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"the data directory {settings.data_dir} cannot be made: {exc}"
        ) from None
    check_jobs_backend(settings)
    api_keys = load_api_keys(settings)
    fingerprint_key = load_secret(settings, "fingerprint-key")
    catalog, quota_store = await open_catalog_at(settings.catalog_url, settings.catalog_path)
    # One bounded pool for every blocking job (decode, warp, XML parse), so a burst of
    # reads queues instead of spawning threads without end.
    executor = ThreadPoolExecutor(settings.executor_workers, thread_name_prefix="blocking")
    metrics = Metrics()
    metrics.set_backends(settings.backends())
    quotas = Quotas(quota_store, gauges=metrics.quota)
    client = UpstreamClient(
        policy=AddressPolicy(settings.allowed_networks),
        timeout=settings.upstream_timeout,
        connect_timeout=settings.upstream_connect_timeout,
        max_bytes=settings.upstream_max_bytes,
        connections=settings.upstream_connections,
        retry=RetryPolicy(retries=settings.upstream_retries, backoff=settings.upstream_backoff),
        observer=metrics.upstream,
    )
    upstream = UpstreamContext(
        client=client,
        executor=executor,
        max_image_pixels=settings.max_image_pixels,
        capabilities_ttl=settings.capabilities_ttl,
        capabilities_limits=CapabilitiesLimits(
            max_bytes=settings.capabilities_max_bytes,
            max_layers=settings.capabilities_max_layers,
            parse_timeout=settings.capabilities_parse_timeout,
            cache_bytes=settings.capabilities_cache_bytes,
        ),
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown=settings.breaker_cooldown,
        rate_max_wait=settings.upstream_timeout,
        job_upstream_share=settings.job_upstream_share,
        fingerprints=Fingerprints(fingerprint_key),
        quotas=quotas,
    )
    # One cache under every source of a saved server; its events (metrics) are set later.
    tile_cache = TileCache(
        settings.data_dir / "cache",
        memory_bytes=settings.cache_memory_bytes,
        disk_bytes=settings.cache_disk_bytes,
        negative_ttl=settings.negative_ttl,
        executor=executor,
        events=metrics.cache,
        shared=shared_tier(settings, metrics),
        lock_lease=settings.redis_lock_lease,
    )
    tile_cache.decoded = DecodedTiles(settings.decoded_cache_bytes)
    metrics.watch_cache(tile_cache)
    sources = OpenSources(upstream, cache=tile_cache)
    tokens = TileTokens(load_secret(settings, "tile-token-key"))
    tiles = TileService(
        catalog,
        sources,
        tile_cache,
        executor,
        read_limits(settings),
        meta_tiles=settings.meta_tiles,
        meta_buffer=settings.meta_buffer,
    )
    await tile_cache.start()
    services = Services(
        settings,
        catalog,
        upstream,
        executor,
        api_keys,
        sources,
        metrics,
        tile_cache,
        tokens,
        tiles,
        quotas,
    )
    try:
        yield services
    finally:
        await tile_cache.close()
        await client.close()
        await quota_store.close()
        await catalog.close()
        executor.shutdown(wait=True, cancel_futures=True)


def check_jobs_backend(settings: Settings) -> None:
    """``jobs = postgres`` claims cells from the PostgreSQL catalog: it needs one."""
    if settings.jobs == "postgres" and not settings.catalog_url:
        raise StartupError(
            "jobs = postgres needs the catalog on PostgreSQL: set catalog_url to a "
            "postgresql:// URL (or jobs = inline to run jobs inside serve)"
        )


def shared_tier(settings: Settings, metrics: Metrics) -> RedisTier | None:
    """The Redis tier named by ``cache_url``, or None for the local cache."""
    if not settings.cache_url:
        return None
    return RedisTier(
        settings.cache_url,
        prefix=settings.cache_prefix,
        timeout=settings.redis_timeout,
        connect_timeout=settings.redis_connect_timeout,
        bulk_timeout=settings.redis_bulk_timeout,
        stale_grace=settings.cache_stale_grace,
        breaker_threshold=settings.redis_breaker_threshold,
        breaker_cooldown=settings.redis_breaker_cooldown,
        observer=RedisMetrics(metrics.registry),
    )


def load_api_keys(settings: Settings) -> frozenset[str]:
    """Configured keys; with none configured, the key in ``data_dir/api-key`` (made once).

    Blank keys are never keys: a blank configured key is dropped, and a key file that is
    blank or unreadable (a failed write, a wrong permission) stops the start-up with
    :class:`StartupError` rather than letting the empty string authenticate.
    """
    configured = frozenset(k.strip() for k in settings.api_keys if k.strip())
    if configured:
        return configured
    path = settings.data_dir / "api-key"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
        log.warning("no API key configured: generated one into %s", path)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"the API key file {path} cannot be read: {exc}") from None
    if not key:
        raise StartupError(
            f"the API key file {path} is empty: delete it to generate a new key, or set api_keys"
        )
    return frozenset([key])


def load_fingerprint_key(settings: Settings) -> bytes:
    """The installation's secret for cache keys, in ``data_dir/fingerprint-key``."""
    return load_secret(settings, "fingerprint-key")


def load_secret(settings: Settings, name: str) -> bytes:
    """A secret of the installation in ``data_dir/<name>`` (made once).

    It outlives restarts: keys of cached data on disk stay valid (``fingerprint-key``),
    and so do minted tile tokens (``tile-token-key``).
    """
    path = settings.data_dir / name
    if not path.exists():
        _write_private(path, secrets.token_hex(32))
    try:
        key = bytes.fromhex(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as exc:
        raise StartupError(f"the key file {path} cannot be read: {exc}") from None
    if len(key) < 16:
        raise StartupError(
            f"the key file {path} is empty or too short: delete it to make a new one"
        )
    return key


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` atomically, readable by the owner only.

    A temporary file made 0600 from the start is renamed over ``path``, so a crash or a
    full disk leaves either no file or the whole key, never a blank one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
