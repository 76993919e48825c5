"""Service errors, the status table for every error of both packages, and the JSON error body.

ProxyError
├── BadRequest          malformed request (not JSON, bad query)        400
│   ├── InvalidTile     z/x/y outside the tile matrix set              400
│   └── UnknownFormat   a tile extension that is not served            400
├── InvalidInput        well-formed but invalid (validation)           422
├── Unauthorized        no valid API key                               401
├── NotFound            no such resource                               404
│   └── TileNotFound    a zoom outside the server's range              404
├── ServerDeleted       an image whose server was deleted              410
├── NotAvailableYet     a feature another issue brings (download)      422
├── BlockedAddress      upstream address refused (SSRF guard)          403
├── ResolutionNotSupported  no data at that zoom, data at a coarser    422
├── NoData              no data at that place at any probed zoom       422
├── CatalogUnavailable  the catalog cannot be read or written          503
└── CacheUnavailable    the shared cache (Redis) failed a purge/stats  503

StartupError (not a ProxyError): the service cannot start; one line says why.

Every error body has a hint: the error's own, else the first one of :data:`HINTS` along
the class's MRO.
"""

from __future__ import annotations

import math
import time
from typing import Any

from streaming import errors as se


class ProxyError(se.CodedError):
    """Root of the service's own errors."""


class BadRequest(ProxyError):
    """The request is malformed."""

    code = "bad_request"


class InvalidTile(BadRequest):
    """The tile's z/x/y is outside the tile matrix set."""

    code = "invalid_tile"


class UnknownFormat(BadRequest):
    """The tile's extension names a format that is not served."""

    code = "unsupported_format"


class InvalidInput(ProxyError):
    """The request is well-formed but its content is invalid."""

    code = "invalid_input"


class Unauthorized(ProxyError):
    """The request has no valid API key."""

    code = "unauthorized"


class NotFound(ProxyError):
    """No such resource."""

    code = "not_found"


class TileNotFound(NotFound):
    """The server serves no tile at that zoom."""

    code = "tile_not_found"


class Conflict(ProxyError):
    """The resource is not in a state that allows the request (409)."""

    code = "conflict"


class ServerDeleted(ProxyError):
    """The image's server was deleted: the image cannot be read any more."""

    code = "server_deleted"


class NotAvailableYet(ProxyError):
    """A documented option that a later part of the service brings (e.g. ``download``)."""

    code = "not_available_yet"


class BlockedAddress(ProxyError):
    """The upstream address is refused by the outbound address policy."""

    code = "blocked_address"


class ResolutionNotSupported(ProxyError):
    """The upstream has no data at the asked resolution, but has some coarser."""

    code = "resolution_not_supported"


class NoData(ProxyError):
    """The upstream has no data at that place."""

    code = "no_data"


class LevelsShifted(NoData):
    """No data at the asked levels, but the same place one level off: a zoom_offset."""

    code = "levels_shifted"


class CatalogUnavailable(ProxyError):
    """The catalog cannot be read or written (read-only file, full disk, corruption)."""

    code = "catalog_unavailable"


class QuotaInsufficient(ProxyError):
    """An import asked ``require_quota`` and would use more than the server's quota has left."""

    code = "quota_insufficient"


class CacheUnavailable(ProxyError):
    """The shared cache tier failed a purge or a count (serving never raises this)."""

    code = "cache_unavailable"


class StartupError(Exception):
    """The service cannot start (unusable key file, corrupt catalog); the message says why."""


# Looked up along the exception's MRO, so subclasses inherit their parent's status.
STATUS: dict[type[Exception], int] = {
    BadRequest: 400,
    InvalidInput: 422,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    ServerDeleted: 410,
    NotAvailableYet: 422,
    BlockedAddress: 403,
    ResolutionNotSupported: 422,
    NoData: 422,
    CatalogUnavailable: 503,
    QuotaInsufficient: 409,
    CacheUnavailable: 503,
    se.InvalidRead: 400,
    se.ReadTooLarge: 413,
    se.ResolutionTooHigh: 409,
    se.InvalidWindow: 400,
    se.WindowOutside: 422,
    se.AOIError: 422,
    se.InvalidCRS: 422,
    se.SourceError: 502,
    se.SourceTimeout: 504,
    se.SourceUnavailable: 503,
    se.SourceNotFound: 404,
    se.SourceUnsupported: 422,
    se.SourceQuotaExceeded: 429,
}


def status_for(exc: BaseException) -> int:
    """HTTP status of an error: the first class of its MRO found in :data:`STATUS`."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


# The hint of an error raised without one, by class (looked up along the MRO).
HINTS: dict[type[Exception], str] = {
    BadRequest: "check the request against the API documentation",
    InvalidInput: "correct the fields named in the message and send it again",
    Unauthorized: "send the API key in the X-API-Key header or as Authorization: Bearer <key>",
    NotFound: "check the id; GET /servers lists the servers",
    TileNotFound: "ask for a zoom inside the server's range (its TileJSON lists it)",
    InvalidTile: "z is 0..24 and x, y are 0..2^z-1 in WebMercatorQuad",
    UnknownFormat: "use .png, .jpg, .jpeg, .webp, or no extension for the upstream's format",
    Conflict: "read the resource's state (GET it) and ask again when it allows this",
    ServerDeleted: "delete the image, or import its AOIs again over another server",
    NotAvailableYet: "use the options the API documentation lists as available",
    BlockedAddress: "allow its network in the allowed_networks setting if it is trusted",
    ResolutionNotSupported: "use the suggested resolution or a coarser one",
    NoData: "try a place inside the layer's extent",
    LevelsShifted: "set the server's zoom_offset as the message says",
    CatalogUnavailable: "the catalog file is read-only, full or damaged: check the data "
    "directory and its disk; stored data is kept",
    QuotaInsufficient: "raise the server's quota, import a smaller area or a coarser "
    "resolution, or wait until the quota resets",
    CacheUnavailable: "Redis (the cache_url setting) is down or slow: tiles are still served; "
    "try again once GET /ready reports the cache ok",
    se.InvalidRead: "check the area, the size and the resolution of the read",
    se.ReadTooLarge: "read a smaller area or at a coarser resolution",
    se.ResolutionTooHigh: "read at a coarser resolution",
    se.SourceTLSError: "the TLS certificate could not be verified: enable skip_ssl if you "
    "trust this server",
    se.SourceAuthError: "check the credentials, the headers or the API-key query parameters",
    se.SourceServiceException: "the server refused the request; its message says why",
    se.SourceWrongContentType: "the URL answers something that is not an image: check it "
    "points at tiles or at the service endpoint",
    se.SourceTimeout: "the server is slow or unreachable; try again or check the URL",
    se.SourceUnavailable: "the server is down or unreachable; check the host and port",
    se.SourceNotFound: "the server has no data there; try another place or zoom",
    se.SourceUnsupported: "this upstream feature is not supported; choose another format or layer",
    se.SourceQuotaExceeded: "raise the server's quota, or wait until it resets",
    se.SourceBadResponse: "the server answered something unexpected; check the URL and the "
    "layer, or try again",
    se.SourceError: "check the server's URL and that it answers",
    se.StreamingError: "check the read's parameters",
}
INTERNAL_HINT = "this is a bug of the service: the log has the details"


def hint_for(exc: BaseException) -> str:
    """The hint of an error: its own, else its class's, else a generic one."""
    own = getattr(exc, "hint", None)
    if own:
        return str(own)
    for cls in type(exc).__mro__:
        if cls in HINTS:
            return HINTS[cls]
    return INTERNAL_HINT


def error_headers(exc: BaseException) -> dict[str, str]:
    """Headers of an error answer: ``Retry-After`` (seconds) when a quota says when to retry."""
    if isinstance(exc, se.SourceQuotaExceeded):
        return {"Retry-After": str(max(0, math.ceil(exc.resets_at - time.time())))}
    return {}


def error_body(exc: BaseException) -> dict[str, Any]:
    """The SPEC §7 error body: ``{"error": {"code", "message", "hint"}}``, always with a hint."""
    if isinstance(exc, se.CodedError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, "hint": hint_for(exc)}
        error.update(exc.extra)
        return {"error": error}
    return {
        "error": {"code": "internal", "message": "internal server error", "hint": INTERNAL_HINT}
    }
