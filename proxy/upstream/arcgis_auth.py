"""Requests to an ArcGIS REST service: generateToken, the token header, JSON errors.

ArcGIS reports most errors as ``{"error": {"code": ..., "message": ...}}`` with HTTP
200, token errors (498 invalid/expired, 499 required) included, even where an image was
asked. The token travels in the ``X-Esri-Authorization`` header, never in a URL, so it
cannot leak through logs, diagnostics or cache keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import orjson

from proxy.cache.keys import digest
from proxy.net.client import UpstreamResponse
from proxy.net.redact import redact_text
from proxy.schemas import ArcGISConfig
from proxy.upstream.base import ServerConnection, UpstreamContext, check_status
from streaming.errors import (
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceNotFound,
    SourceUnavailable,
)

AUTH_CODES = frozenset({498, 499})
TOKEN_MINUTES = 60
# Renew a minute early, so a token never expires in the middle of a read.
TOKEN_MARGIN = 60.0
NO_TOKEN_HINT = "the service needs a token: set credentials to username:password"


@attrs.frozen
class Token:
    """A token and when it expires (epoch seconds)."""

    value: str
    expires: float

    def fresh(self) -> bool:
        """True while the token has more than :data:`TOKEN_MARGIN` seconds left."""
        return time.time() < self.expires - TOKEN_MARGIN


def service_roots(url: str) -> tuple[str, str]:
    """The REST root (``.../arcgis/rest``) and server root (``.../arcgis``) of a service URL."""
    head = url.split("/services/", 1)[0] if "/services/" in url else url.rsplit("/", 2)[0]
    server = head[: -len("/rest")] if head.endswith("/rest") else head
    return server + "/rest", server


def generate_token_url(advertised: str) -> str:
    """The generateToken endpoint of an advertised ``tokenServicesUrl``.

    ArcGIS Server advertises ``.../arcgis/tokens/``; Portal advertises the endpoint itself.
    """
    advertised = advertised.split("?", 1)[0]
    if advertised.rstrip("/").endswith("generateToken"):
        return advertised.rstrip("/")
    return advertised.rstrip("/") + "/generateToken"


def looks_like_json(body: bytes) -> bool:
    """True when ``body`` starts like a JSON object."""
    return body[:64].lstrip()[:1] == b"{"


def auth_failure(resp: UpstreamResponse) -> str | None:
    """What says a token was refused (HTTP 498/499 or the code in a JSON body), else ``None``."""
    if resp.status in AUTH_CODES:
        return f"HTTP {resp.status}"
    if not looks_like_json(resp.body):
        return None
    try:
        payload = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("code") in AUTH_CODES:
        return f"error {error['code']}: {error.get('message', '')}"
    return None


def parse_json(resp: UpstreamResponse, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``resp``; the source error its status or ``error`` member stands for."""
    payload = load_json(resp, secrets)
    raise_for_error(payload, secrets)
    return payload


def load_json(resp: UpstreamResponse, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``resp``, after its HTTP status is checked."""
    if resp.status in AUTH_CODES:
        raise SourceAuthError(f"the service refused the token (HTTP {resp.status})")
    check_status(resp, secrets)
    try:
        payload = orjson.loads(resp.body)
    except orjson.JSONDecodeError as exc:
        raise SourceBadResponse(
            f"the service answered {resp.content_type or 'no content type'}, not JSON",
            hint="check that the URL is an ArcGIS REST service (…/rest/services/…/MapServer)",
        ) from exc
    if not isinstance(payload, dict):
        raise SourceBadResponse("the service answered JSON that is not an object")
    return payload


def raise_for_error(payload: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> None:
    """Raise the source error an ArcGIS ``{"error": {...}}`` document stands for."""
    error = payload.get("error")
    if not isinstance(error, dict):
        return
    code = error.get("code")
    code = code if isinstance(code, int) else 0
    message = redact_text(f"ArcGIS error {code}: {error_text(error)}", secrets)
    if code in AUTH_CODES or code in (401, 403):
        raise SourceAuthError(message, hint=NO_TOKEN_HINT if code == 499 else None)
    if code == 404:
        raise SourceNotFound(message)
    if code >= 500:
        raise SourceUnavailable(message)
    raise SourceBadResponse(message)


def error_text(error: Mapping[str, Any]) -> str:
    """The message and details of an ArcGIS error member."""
    details = [str(d) for d in error.get("details") or [] if d]
    return "; ".join([str(error.get("message") or "(no message)"), *details])


class ArcGISSession:
    """Requests to one ArcGIS service, with a token when credentials are set.

    Tokens are shared through the context's token cache per account (token URL, referer,
    username, keyed hash of the password), so every service of the same account reuses
    one token until it expires. The service document is cached per access fingerprint.
    """

    def __init__(self, config: ArcGISConfig, ctx: UpstreamContext) -> None:
        self.config = config
        self.connection = ServerConnection(config, ctx)
        self._base_secrets = self.connection.secrets
        self.username, _, self._password = (config.credentials or "").partition(":")
        parts = urlsplit(config.url)
        self.referer = f"{parts.scheme}://{parts.netloc}/"
        self._token: Token | None = None
        self._token_url: str | None = None
        self._discovered = False
        self._lock = asyncio.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to redact: the config's secrets and the current token."""
        return self.connection.secrets

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> UpstreamResponse:
        """GET ``url`` with the token; a refused token is renewed once, then it is an error."""
        token = await self.token()
        resp = await self.connection.get(url, params, self._headers(token))
        if token is None or auth_failure(resp) is None:
            return resp
        token = await self.token(rejected=token)
        resp = await self.connection.get(url, params, self._headers(token))
        if (failure := auth_failure(resp)) is not None:
            raise SourceAuthError(
                f"the service refused a new token of user {self.username!r} ({failure})",
                hint="check that this user may access the service",
            )
        return resp

    async def service_info(self) -> dict[str, Any]:
        """The service's ``?f=json`` document, cached per access fingerprint."""
        ctx = self.connection.ctx
        key = ctx.fingerprints.access(self.config)
        cached = ctx.service_info.get(key)
        if cached is not None:
            return cached
        info = await self.get_json(self.config.url)
        ctx.service_info[key] = info
        return info

    async def get_json(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``url`` as ``f=json`` and check the answer for ArcGIS errors."""
        resp = await self.get(url, {**(params or {}), "f": "json"})
        return parse_json(resp, self.secrets)

    def _headers(self, token: str | None) -> dict[str, str]:
        if token is None:
            return {}
        # A token made for client=referer is only valid with that Referer.
        return {"X-Esri-Authorization": f"Bearer {token}", "Referer": self.referer}

    async def token(self, rejected: str | None = None) -> str | None:
        """The current token (``None`` without credentials); a new one if ``rejected`` is it."""
        if not self.config.credentials or (self._discovered and self._token_url is None):
            return None
        current = self._token
        if current is not None and current.fresh() and current.value != rejected:
            return current.value
        async with self._lock:  # one generateToken at a time, whatever the concurrency
            if not self._discovered:
                self._token_url = await self._find_token_url()
                self._discovered = True
            if self._token_url is None:
                return None
            self._token = await self._shared_token(self._token_url, rejected)
            self.connection.secrets = (*self._base_secrets, self._token.value)
            return self._token.value

    async def _shared_token(self, url: str, rejected: str | None) -> Token:
        ctx = self.connection.ctx
        # Another password never gets this account's token; the key holds no secret.
        password = ctx.fingerprints.keyed(self._password)
        key = digest([url, self.referer, self.username, password])
        cache = ctx.tokens
        cached = cache.get(key)
        if isinstance(cached, Token) and cached.fresh() and cached.value != rejected:
            return cached
        token = await self._generate(url)
        cache[key] = token
        return token

    async def _find_token_url(self) -> str | None:
        """The generateToken URL from ``{rest}/info``, else the usual one; ``None``: no tokens."""
        rest_root, server_root = service_roots(self.config.url)
        fallback = server_root + "/tokens/generateToken"
        try:
            info = parse_json(await self.connection.get(rest_root + "/info", {"f": "json"}))
        except SourceError:
            return fallback
        auth = info.get("authInfo")
        if not isinstance(auth, dict):
            return fallback
        if auth.get("isTokenBasedSecurity") is False:
            return None
        advertised = auth.get("tokenServicesUrl")
        if isinstance(advertised, str) and self._may_send_password(advertised):
            return generate_token_url(advertised)
        return fallback

    def _may_send_password(self, url: str) -> bool:
        """The password goes over HTTPS, or to the service's own host and scheme."""
        target, service = urlsplit(url), urlsplit(self.config.url)
        if target.scheme == "https" and target.hostname:
            return True
        return (target.scheme, target.netloc) == (service.scheme, service.netloc)

    async def _generate(self, url: str) -> Token:
        form = {
            "username": self.username,
            "password": self._password,
            "client": "referer",
            "referer": self.referer,
            "expiration": str(TOKEN_MINUTES),
            "f": "json",
        }
        resp = await self.connection.get(url, method="POST", data=form)
        payload = load_json(resp, self.secrets)
        error = payload.get("error")
        if isinstance(error, dict):
            text = redact_text(error_text(error), self.secrets)
            raise SourceAuthError(
                f"generateToken refused user {self.username!r}: {text}",
                hint="check the username and password (credentials username:password)",
            )
        value = payload.get("token")
        if not isinstance(value, str) or not value:
            raise SourceBadResponse("generateToken answered no token")
        expires = payload.get("expires")  # milliseconds since the epoch
        now = time.time()
        if not isinstance(expires, int | float) or expires <= 0:
            return Token(value, now + TOKEN_MINUTES * 60)
        # With a skewed clock the expiry may look past: keep the token a while rather than
        # ask for a new one on every request (a refused token is renewed anyway).
        return Token(value, max(expires / 1000, now + 2 * TOKEN_MARGIN))
