"""The service's long-lived resources, opened and closed together (app and CLI share them)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import attrs

from proxy.cache.keys import Fingerprints
from proxy.cache.sources import OpenSources
from proxy.catalog.base import Catalog
from proxy.catalog.sqlite import open_catalog
from proxy.config import Settings
from proxy.net.client import UpstreamClient
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy
from proxy.upstream.base import UpstreamContext
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

    @property
    def read_limits(self) -> ReadLimits:
        """Budgets of one read, from the settings."""
        s = self.settings
        return ReadLimits(
            max_pixels=s.max_read_pixels,
            max_requests=s.max_read_requests,
            max_image_pixels=s.max_image_pixels,
        )


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the catalog, the executor and the upstream client; close them on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = await open_catalog(settings.catalog_path)
    # One bounded pool for every blocking job (decode, warp, XML parse), so a burst of
    # reads queues instead of spawning threads without end.
    executor = ThreadPoolExecutor(settings.executor_workers, thread_name_prefix="blocking")
    client = UpstreamClient(
        policy=AddressPolicy(settings.allowed_networks),
        timeout=settings.upstream_timeout,
        connect_timeout=settings.upstream_connect_timeout,
        max_bytes=settings.upstream_max_bytes,
        connections=settings.upstream_connections,
        retry=RetryPolicy(retries=settings.upstream_retries, backoff=settings.upstream_backoff),
    )
    upstream = UpstreamContext(
        client=client,
        executor=executor,
        max_image_pixels=settings.max_image_pixels,
        capabilities_ttl=settings.capabilities_ttl,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown=settings.breaker_cooldown,
        fingerprints=Fingerprints(load_fingerprint_key(settings)),
    )
    sources = OpenSources(upstream)
    try:
        yield Services(settings, catalog, upstream, executor, load_api_keys(settings), sources)
    finally:
        await client.close()
        await catalog.close()
        executor.shutdown(wait=True, cancel_futures=True)


def load_api_keys(settings: Settings) -> frozenset[str]:
    """Configured keys; with none configured, the key in ``data_dir/api-key`` (made once)."""
    if settings.api_keys:
        return frozenset(settings.api_keys)
    path = settings.data_dir / "api-key"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
        log.warning("no API key configured: generated one into %s", path)
    return frozenset([path.read_text().strip()])


def load_fingerprint_key(settings: Settings) -> bytes:
    """The installation's secret for cache keys, in ``data_dir/fingerprint-key`` (made once).

    It outlives restarts, so keys of cached data on disk stay valid.
    """
    path = settings.data_dir / "fingerprint-key"
    if not path.exists():
        _write_private(path, secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")
