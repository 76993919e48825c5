"""What every adapter shares: the per-server connection and the checks on upstream answers."""

from __future__ import annotations

import asyncio
import contextvars
import re
import secrets
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any
from urllib.parse import urlsplit

import attrs
from cachetools import LRUCache, TTLCache
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from proxy.cache.keys import Fingerprints
from proxy.net.client import UpstreamClient, UpstreamResponse
from proxy.net.limits import CircuitBreaker, ServerLimits
from proxy.net.redact import redact_text
from proxy.net.scope import CredentialScope
from proxy.quota.enforce import Quotas
from proxy.schemas import ServerBase
from streaming.errors import (
    SourceAuthError,
    SourceBadResponse,
    SourceServiceException,
    SourceTimeout,
    SourceUnavailable,
    SourceWrongContentType,
)
from streaming.sources import FetchedImage

# Validators of a cached image being revalidated (``If-None-Match``/``If-Modified-Since``
# headers), set by the tile cache around one fetch. A context variable, because the
# adapters between the cache and :meth:`ServerConnection.get_image` need not know of it;
# only image requests read it, never capabilities or token requests.
CONDITIONAL: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "conditional", default=None
)


class UpstreamNotModified(Exception):  # noqa: N818 - a signal, not a failure
    """The upstream answered 304 to a conditional image request: the cached image holds.

    Not a ``SourceError``: it travels from :meth:`ServerConnection.get_image` through the
    adapter to the cache that set :data:`CONDITIONAL`, which turns it into ``NotModified``.
    """


IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*")
EXCEPTION_TAG = re.compile(rb"ServiceException|ExceptionReport|ExceptionText")


@attrs.frozen
class CapabilitiesLimits:
    """Bounds of capabilities documents: size, layers, parse time, and the cache's bytes."""

    max_bytes: int = 16 * 1024 * 1024
    max_layers: int = 10_000
    parse_timeout: float = 20.0
    cache_bytes: int = 64 * 1024 * 1024


@attrs.frozen
class CachedDocument:
    """A parsed capabilities document and the size of the bytes it came from."""

    value: Any
    size: int


def _weight(entry: CachedDocument) -> int:
    return max(entry.size, 1)


@attrs.define
class UpstreamContext:
    """Shared resources adapters use: the HTTP client, the executor, small caches.

    Metadata caches are keyed by :class:`~proxy.cache.keys.Fingerprints`, one cache per
    kind of document, so no two key schemes share a dict.
    """

    client: UpstreamClient
    executor: Executor | None
    max_image_pixels: int
    capabilities_ttl: float = 300.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    rate_max_wait: float = 30.0  # longest wait for a rate-limit slot (the upstream timeout)
    job_upstream_share: float = 1.0  # share of max_concurrency jobs may use (the service: 0.5)
    capabilities_limits: CapabilitiesLimits = attrs.field(factory=CapabilitiesLimits)
    # The service passes the installation's key; a context of its own gets a random one.
    fingerprints: Fingerprints = attrs.field(factory=lambda: Fingerprints(secrets.token_bytes(32)))
    quotas: Quotas | None = None  # the service's quota counters; None: nothing is counted
    # Parsed WMS/WMTS documents, bounded by the bytes of their documents, not by count.
    capabilities: TTLCache[str, CachedDocument] = attrs.field(init=False)
    service_info: TTLCache[str, dict[str, Any]] = attrs.field(init=False)  # ArcGIS ?f=json
    tokens: LRUCache[str, Any] = attrs.field(init=False)  # ArcGIS tokens, expiry inside
    limits: LRUCache[tuple[str, int, float | None], ServerLimits] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.capabilities = TTLCache(
            maxsize=self.capabilities_limits.cache_bytes,
            ttl=self.capabilities_ttl,
            getsizeof=_weight,
        )
        self.service_info = TTLCache(maxsize=256, ttl=self.capabilities_ttl)
        self.tokens = LRUCache(maxsize=256)
        self.limits = LRUCache(maxsize=1024)

    def limits_for(self, config: ServerBase) -> ServerLimits:
        """The limits of ``config``'s server, shared by all its sources.

        One per URL and limit settings, so every read and test of a server counts
        against the same cap (SPEC §8).
        """
        key = (config.url, config.max_concurrency, config.rate_limit)
        limits = self.limits.get(key)
        if limits is None:
            breaker = CircuitBreaker(self.breaker_threshold, self.breaker_cooldown)
            limits = ServerLimits(
                config.max_concurrency,
                config.rate_limit,
                breaker,
                max_wait=self.rate_max_wait,
                job_share=self.job_upstream_share,
            )
            self.limits[key] = limits
        return limits

    async def run(self, func: Any, *args: Any) -> Any:
        """Run blocking ``func(*args)`` in the executor, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)


class ServerConnection:
    """HTTP access to one upstream server: its headers, params, TLS choice and limits."""

    def __init__(self, config: ServerBase, ctx: UpstreamContext) -> None:
        self.config = config
        self.ctx = ctx
        self.secrets = tuple(config.secrets())
        self.limits = ctx.limits_for(config)
        self.scope = credential_scope(config)
        # Bound now: a connection made while a saved server's source opens counts for it.
        self.quota = None if ctx.quotas is None else ctx.quotas.gate(config.quota)

    async def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "GET",
        data: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> UpstreamResponse:
        """Request ``url`` with the server's headers and params, within its limits.

        The credentials go only to the config's own host (and its ``credential_hosts``):
        the client drops them on any hop elsewhere.
        """
        async with self.limits:
            try:
                resp = await self.ctx.client.request(
                    method,
                    url,
                    params=_merged(self.config.params, params),
                    data=data,
                    headers=_merged(self.config.headers, headers),
                    verify_ssl=not self.config.skip_ssl,
                    secrets=self.secrets,
                    scope=self.scope,
                    max_bytes=max_bytes,
                    quota=self.quota,
                )
            except (SourceUnavailable, SourceTimeout):
                self.limits.breaker.record(ok=False)
                raise
            self.limits.breaker.record(ok=resp.status < 500)
            return resp

    async def get_image(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FetchedImage | None:
        """Fetch an image; ``None`` when the upstream has none there (404, 204, empty).

        Inside a revalidation (:data:`CONDITIONAL` set) the validators are sent, and a 304
        raises :class:`UpstreamNotModified`. The image carries the upstream's ``ETag`` and
        ``Last-Modified``.
        """
        conditional = CONDITIONAL.get()
        if conditional:
            headers = {**conditional, **(headers or {})}
        resp = await self.get(url, params, headers)
        if resp.status == 304 and conditional:
            raise UpstreamNotModified()
        image = check_image(resp, self.secrets)
        if image is None:
            return None
        etag, modified = _header(resp, "etag"), _header(resp, "last-modified")
        if etag or modified:
            return FetchedImage(image.data, image.content_type, etag, modified)
        return image


def _merged(own: Mapping[str, str], extra: Mapping[str, str] | None) -> Mapping[str, str]:
    """The config's values overridden by the request's; no new dict when one side is empty."""
    if not extra:
        return own
    return {**own, **extra} if own else extra


def _header(resp: UpstreamResponse, name: str) -> str | None:
    """A response header by case-insensitive name (the headers are a plain dict)."""
    return next((v for k, v in resp.headers.items() if k.lower() == name), None)


def credential_scope(config: ServerBase) -> CredentialScope:
    """Where ``config``'s credentials may be sent: its URL's host and its credential hosts."""
    hosts = [urlsplit(config.url).hostname or "", *config.credential_hosts]
    return CredentialScope.build(hosts, config.headers, config.params, config.secrets())


def check_status(resp: UpstreamResponse, secrets: tuple[str, ...] = ()) -> None:
    """Raise the source error an HTTP error status stands for."""
    if resp.status in (401, 403):
        raise SourceAuthError(
            f"the upstream refused the request (HTTP {resp.status})",
            hint="check the credentials, the headers or the API-key query parameters",
        )
    if resp.status == 429 or resp.status >= 500:
        raise SourceUnavailable(f"the upstream answered HTTP {resp.status}")
    if resp.status >= 400:
        raise SourceBadResponse(
            f"the upstream answered HTTP {resp.status}: {redact_text(resp.text(200), secrets)}"
        )


def check_image(resp: UpstreamResponse, secrets: tuple[str, ...] = ()) -> FetchedImage | None:
    """The image in ``resp``; ``None`` for no data; a source error for anything else.

    Bytes are sniffed rather than the content type trusted: servers label images
    ``application/octet-stream`` and errors ``image/png``. An OGC exception sent with
    HTTP 200 is an error, never an image.
    """
    if resp.status in (204, 404):
        return None
    check_status(resp, secrets)
    if not resp.body:
        return None
    if is_image(resp.body):
        return FetchedImage(resp.body, resp.content_type)
    raise_for_document(resp, secrets)
    raise SourceWrongContentType(
        f"the upstream sent {resp.content_type or 'no content type'} instead of an image: "
        f"{redact_text(resp.text(200), secrets)!r}",
        hint="check that the URL points at image tiles, not at a web page or an API",
    )


def is_image(body: bytes) -> bool:
    """True when ``body`` starts like a PNG, JPEG, GIF, TIFF or WebP file."""
    return body.startswith(IMAGE_MAGIC) or (body[:4] == b"RIFF" and body[8:12] == b"WEBP")


def raise_for_document(resp: UpstreamResponse, secrets: tuple[str, ...] = ()) -> None:
    """Raise :class:`SourceServiceException` when ``resp`` holds an OGC exception."""
    if not EXCEPTION_TAG.search(resp.body[:4096]):
        return
    text = exception_text(resp.body)
    raise SourceServiceException(
        f"the upstream answered a ServiceException: {redact_text(text, secrets)}",
        hint="the server refused the request; its message says why (layer, style, CRS, format)",
    )


def exception_text(body: bytes) -> str:
    """The message of an OGC ServiceException/ExceptionReport document."""
    try:
        # A bare DOCTYPE is allowed (WMS 1.1.1 exceptions carry one); entities are not.
        root = ElementTree.fromstring(body, forbid_dtd=False)
    except (DefusedXmlException, ElementTree.ParseError):
        return body[:300].decode("utf-8", errors="replace")
    texts = [
        " ".join((el.text or "").split())
        for el in root.iter()
        if el.tag.rsplit("}", 1)[-1] in ("ServiceException", "ExceptionText")
    ]
    return "; ".join(t for t in texts if t) or "(no message)"
