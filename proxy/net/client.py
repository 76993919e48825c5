"""The one upstream HTTP client: timeouts, address policy on every hop, diagnostics.

Transport failures become :mod:`streaming.errors` source errors here, so adapters and the
streaming library never see aiohttp exceptions. Every request is recorded into the
current :data:`REQUEST_LOG`, when one is set (test connection uses it for diagnostics).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
from collections.abc import Iterable, Mapping

import aiohttp
import attrs
from yarl import URL

from proxy.errors import BlockedAddress
from proxy.net.redact import redact_text, redact_url
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy, GuardedResolver
from streaming.errors import (
    SourceBadResponse,
    SourceError,
    SourceTimeout,
    SourceTLSError,
    SourceUnavailable,
)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@attrs.frozen
class RequestRecord:
    """One upstream request as diagnostics show it (secrets already redacted)."""

    method: str
    url: str
    status: int | None
    latency_ms: float
    bytes: int
    content_type: str | None
    error: str | None = None


REQUEST_LOG: contextvars.ContextVar[list[RequestRecord] | None] = contextvars.ContextVar(
    "REQUEST_LOG", default=None
)


@attrs.frozen
class UpstreamResponse:
    """A fully read upstream response."""

    status: int
    content_type: str
    body: bytes
    url: str  # the final URL, after redirects; may hold secrets: redact before showing
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def text(self, limit: int = 2000) -> str:
        """The body decoded as text, cut to ``limit`` characters."""
        return self.body[:limit].decode("utf-8", errors="replace")


class UpstreamClient:
    """Wraps the service's single ``aiohttp.ClientSession``."""

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        timeout: float,
        connect_timeout: float,
        max_bytes: int,
        connections: int = 100,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        connector = aiohttp.TCPConnector(
            limit=connections, resolver=GuardedResolver(policy), ttl_dns_cache=60
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout),
            headers={"User-Agent": "imagery-proxy/0.1"},
            auto_decompress=True,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        await self.session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        verify_ssl: bool = True,
        secrets: Iterable[str] = (),
    ) -> UpstreamResponse:
        """Send a request, with retries; each try and each redirect hop is checked and logged."""
        secrets = tuple(secrets)
        target = URL(url, encoded=True)
        if params:
            target = target.update_query(params)
        attempt = 0
        while True:
            try:
                hop = await self._follow(method, target, data, headers, verify_ssl, secrets)
            except SourceError as exc:
                if not self.retry.should_retry_error(method, exc.__cause__ or exc, attempt):
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
            else:
                if not self.retry.should_retry_status(method, hop.status, attempt):
                    return hop
                await asyncio.sleep(self.retry.delay(attempt, hop.headers.get("Retry-After")))
            attempt += 1

    async def _follow(
        self,
        method: str,
        target: URL,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        verify_ssl: bool,
        secrets: tuple[str, ...],
    ) -> UpstreamResponse:
        """One try: send, following redirects by hand so each hop passes the address check."""
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send(method, target, data, headers, verify_ssl, secrets)
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            target = target.join(URL(location, encoded=True))
            if response.status == 303:
                method, data = "GET", None
        raise SourceBadResponse(f"more than {MAX_REDIRECTS} redirects")

    async def _send(
        self,
        method: str,
        url: URL,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        verify_ssl: bool,
        secrets: tuple[str, ...],
    ) -> UpstreamResponse:
        shown = redact_url(str(url), secrets)
        if url.scheme not in ("http", "https") or not url.host:
            raise SourceBadResponse(f"not an http(s) URL: {shown}")
        self.policy.check(url.host)
        started = time.perf_counter()
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                ssl=verify_ssl,  # True: default verification; False: skip_ssl
                allow_redirects=False,
            ) as resp:
                body = await self._read(resp)
                content_type = resp.headers.get("Content-Type", "")
                _log(method, shown, started, resp.status, len(body), content_type)
                return UpstreamResponse(
                    resp.status, content_type, body, str(resp.url), dict(resp.headers)
                )
        except BlockedAddress:
            _log(method, shown, started, error="blocked address")
            raise
        except Exception as exc:
            error = _source_error(exc, shown, secrets)
            if error is None:
                raise
            _log(method, shown, started, error=error.message)
            raise error from exc

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the body, refusing one past ``max_bytes`` (checked as it streams)."""
        declared = resp.content_length
        if declared is not None and declared > self.max_bytes:
            raise SourceBadResponse(
                f"upstream body of {declared} bytes is past the limit of {self.max_bytes} bytes"
            )
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_bytes:
                raise SourceBadResponse(
                    f"upstream body is past the limit of {self.max_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _source_error(exc: Exception, shown: str, secrets: tuple[str, ...]) -> SourceError | None:
    """Map a transport exception to a source error; ``None`` for ones that are not transport."""
    if isinstance(exc, SourceBadResponse):
        return exc
    if isinstance(exc, asyncio.TimeoutError):
        return SourceTimeout(f"no answer in time from {shown}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError) or (
        isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ssl.SSLError)
    ):
        return SourceTLSError(
            f"TLS failed with {shown}: {redact_text(str(exc), secrets)}",
            hint="the certificate could not be verified; enable skip_ssl if you trust this server",
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return SourceUnavailable(f"cannot reach {shown}: {type(exc).__name__}")
    return None


def _log(
    method: str,
    url: str,
    started: float,
    status: int | None = None,
    size: int = 0,
    content_type: str | None = None,
    error: str | None = None,
) -> None:
    log = REQUEST_LOG.get()
    if log is not None:
        latency = round((time.perf_counter() - started) * 1000, 1)
        log.append(RequestRecord(method, url, status, latency, size, content_type, error))
