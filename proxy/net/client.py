"""The one upstream HTTP client: timeouts, address policy on every hop, diagnostics.

Transport failures become :mod:`streaming.errors` source errors here, so adapters and the
streaming library never see aiohttp exceptions. Every request is recorded into the
current :data:`REQUEST_LOG`, when one is set (test connection uses it for diagnostics).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

import aiohttp
import attrs
from yarl import URL

from proxy.errors import BlockedAddress
from proxy.net.redact import redact_text, redact_url
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy, GuardedResolver
from proxy.net.scope import CredentialScope
from streaming.errors import (
    SourceBadResponse,
    SourceError,
    SourceTimeout,
    SourceTLSError,
    SourceUnavailable,
)

MAX_REDIRECTS = 5
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # control characters: never valid in a URL
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


class RequestObserver(Protocol):
    """Told of every upstream HTTP request (each try, each redirect hop): for metrics."""

    def started(self) -> None:
        """A request is about to be sent."""

    def finished(self, status: int | None, seconds: float, error: str | None = None) -> None:
        """It ended with an HTTP ``status`` (body read), or failed with the ``error`` code."""


class QuotaGate(Protocol):
    """A saved server's quota (:class:`proxy.quota.enforce.ServerGate`): asked before each send."""

    async def admit(self) -> object:
        """Count one request about to be sent, or raise ``SourceQuotaExceeded``; a ticket."""

    async def spent(self, ticket: object, size: int) -> None:
        """The admitted request's response body held ``size`` bytes."""


class _NoObserver:
    def started(self) -> None:
        pass

    def finished(self, status: int | None, seconds: float, error: str | None = None) -> None:
        pass


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
        observer: RequestObserver | None = None,
    ) -> None:
        self.policy = policy
        self.observer: RequestObserver = observer or _NoObserver()
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
        scope: CredentialScope | None = None,
        max_bytes: int | None = None,
        quota: QuotaGate | None = None,
    ) -> UpstreamResponse:
        """Send a request, with retries; each try and each redirect hop is checked and logged.

        With a ``scope``, a hop to a host outside it goes without the credentials (first
        hop included: an OnlineResource may name another host). ``max_bytes`` lowers the
        client's body limit for this request. A ``quota`` admits each try and each hop
        before it is sent (the upstream bills each), and is told the bytes of each answer.
        """
        secrets = tuple(secrets)
        target = _parse_url(url, secrets)
        if params:
            target = target.update_query(params)
        send = _Send(method, data, headers, verify_ssl, secrets, scope, max_bytes, quota)
        attempt = 0
        while True:
            try:
                hop = await self._follow(target, send)
            except SourceError as exc:
                if not self.retry.should_retry_error(method, exc.__cause__ or exc, attempt):
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
            else:
                if not self.retry.should_retry_status(method, hop.status, attempt):
                    return hop
                await asyncio.sleep(self.retry.delay(attempt, hop.headers.get("Retry-After")))
            attempt += 1

    async def _follow(self, target: URL, send: _Send) -> UpstreamResponse:
        """One try: send, following redirects by hand so each hop passes the address check.

        Once a hop leaves the credential scope, credentials stay off every later hop too,
        even one that comes back: the foreign host chose that URL.
        """
        for _ in range(MAX_REDIRECTS + 1):
            scope = send.scope
            if scope is not None and not scope.trusts(target):
                send = send.without_credentials()
                target = scope.strip_url(target)
            response = await self._send(target, send)
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            target = _redirect_target(target, location, send.secrets)
            if response.status == 303:
                send = attrs.evolve(send, method="GET", data=None)
        raise SourceBadResponse(
            f"more than {MAX_REDIRECTS} redirects",
            hint="the server redirects in a loop; check the URL",
        )

    async def _send(self, url: URL, send: _Send) -> UpstreamResponse:
        method, secrets = send.method, send.secrets
        # The redacted URL is built only when something shows it: a diagnostics log or an
        # error (~2.5 us per request on the event loop otherwise).
        records = REQUEST_LOG.get()
        shown = redact_url(str(url), secrets) if records is not None else None
        if url.scheme not in ("http", "https") or not url.host:
            raise SourceBadResponse(f"not an http(s) URL: {redact_url(str(url), secrets)}")
        self.policy.check(url.host)
        # Past the quota, SourceQuotaExceeded leaves here: nothing is sent.
        ticket = None if send.quota is None else await send.quota.admit()
        started = time.perf_counter()
        # Counted here, once per request sent, so retries and redirect hops each count.
        self.observer.started()
        status: int | None = None
        code: str | None = None
        try:
            async with self.session.request(
                method,
                url,
                data=send.data,
                headers=send.headers,
                ssl=send.verify_ssl,  # True: default verification; False: skip_ssl
                allow_redirects=False,
            ) as resp:
                body = await self._read(resp, send.max_bytes or self.max_bytes)
                content_type = resp.headers.get("Content-Type", "")
                status = resp.status
                _log(records, method, shown, started, resp.status, len(body), content_type)
                answer = UpstreamResponse(
                    resp.status, content_type, body, str(resp.url), dict(resp.headers)
                )
        except BlockedAddress as exc:
            code = exc.code
            _log(records, method, shown, started, error="blocked address")
            raise
        except Exception as exc:
            error = _source_error(exc, shown or redact_url(str(url), secrets), secrets)
            code = "internal" if error is None else error.code
            if error is None:
                raise
            _log(records, method, shown, started, error=error.message)
            raise error from exc
        except BaseException:  # cancelled: the request ended without an answer
            code = "cancelled"
            raise
        finally:
            self.observer.finished(status, time.perf_counter() - started, code)
        if send.quota is not None:
            await send.quota.spent(ticket, len(answer.body))
        return answer

    async def _read(self, resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
        """Read the body, refusing one past ``max_bytes`` (checked as it streams)."""
        hint = "the answer is larger than this service accepts; check the URL"
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            raise SourceBadResponse(
                f"upstream body of {declared} bytes is past the limit of {max_bytes} bytes",
                hint=hint,
            )
        if declared is not None and not resp.headers.get("Content-Encoding"):
            # Known and within the limit: one read instead of a loop step per chunk. Not
            # for a compressed body, whose inflated size only the streaming loop bounds.
            return await resp.read()
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise SourceBadResponse(
                    f"upstream body is past the limit of {max_bytes} bytes", hint=hint
                )
            chunks.append(chunk)
        return b"".join(chunks)


@attrs.frozen
class _Send:
    """How one request is sent; each redirect hop may change it."""

    method: str
    data: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    verify_ssl: bool
    secrets: tuple[str, ...]
    scope: CredentialScope | None
    max_bytes: int | None
    quota: QuotaGate | None = None

    def without_credentials(self) -> _Send:
        """The same request with the credentials the scope names removed."""
        scope = self.scope
        assert scope is not None
        return attrs.evolve(
            self, data=scope.strip_form(self.data), headers=scope.strip_headers(self.headers)
        )


def _parse_url(url: str, secrets: tuple[str, ...]) -> URL:
    """``url`` as a URL; control characters or an unparsable form are a bad URL."""
    if CONTROL.search(url):
        raise SourceBadResponse(
            f"the URL {redact_url(url, secrets)!r} holds control characters",
            hint="remove line breaks, tabs and other control characters from the URL",
        )
    try:
        return URL(url, encoded=True)
    except (ValueError, TypeError) as exc:
        raise SourceBadResponse(f"malformed URL {redact_url(url, secrets)!r}: {exc}") from None


def _redirect_target(current: URL, location: str, secrets: tuple[str, ...]) -> URL:
    """Where a redirect points; a malformed ``Location`` is a bad answer, not a crash."""
    shown = redact_text(location[:200], secrets)
    hint = "the server sent a broken redirect; check the URL or the server's proxy settings"
    if CONTROL.search(location):
        raise SourceBadResponse(f"redirect to a malformed URL: {shown!r}", hint=hint)
    try:
        target = current.join(URL(location, encoded=True))
        target.host  # noqa: B018 - parses the authority, which may still be malformed
    except (ValueError, TypeError, UnicodeError):
        raise SourceBadResponse(f"redirect to a malformed URL: {shown!r}", hint=hint) from None
    return target


def _source_error(exc: Exception, shown: str, secrets: tuple[str, ...]) -> SourceError | None:
    """Map a transport exception to a source error; ``None`` for ones that are not transport."""
    if isinstance(exc, SourceBadResponse):
        return exc
    if isinstance(exc, aiohttp.ClientPayloadError):
        return SourceUnavailable(
            f"the upstream closed the connection mid-answer ({shown})",
            hint="the server or a proxy on the way cut the answer short; try again",
        )
    if isinstance(exc, aiohttp.InvalidURL | ValueError) and not isinstance(exc, OSError):
        return SourceBadResponse(
            f"the request to {shown} could not be made: {redact_text(str(exc), secrets)}",
            hint="check the URL, the headers and the parameters for invalid characters",
        )
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
    log: list[RequestRecord] | None,
    method: str,
    url: str | None,
    started: float,
    status: int | None = None,
    size: int = 0,
    content_type: str | None = None,
    error: str | None = None,
) -> None:
    if log is None or url is None:  # no diagnostics asked for (the URL was not redacted)
        return
    latency = round((time.perf_counter() - started) * 1000, 1)
    log.append(RequestRecord(method, url, status, latency, size, content_type, error))
