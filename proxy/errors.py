"""Service errors, the status table for every error of both packages, and the JSON error body.

ProxyError
├── BadRequest          malformed request (not JSON, bad query)        400
├── InvalidInput        well-formed but invalid (validation)           422
├── Unauthorized        no valid API key                               401
├── NotFound            no such resource                               404
├── Unsupported         an upstream feature we do not handle (LERC...) 422
├── BlockedAddress      upstream address refused (SSRF guard)          403
├── ResolutionNotSupported  no data at that zoom, data at a coarser    422
└── NoData              no data at that place at any probed zoom       422
"""

from __future__ import annotations

from typing import Any

from streaming import errors as se


class ProxyError(se.CodedError):
    """Root of the service's own errors."""


class BadRequest(ProxyError):
    """The request is malformed."""

    code = "bad_request"


class InvalidInput(ProxyError):
    """The request is well-formed but its content is invalid."""

    code = "invalid_input"


class Unauthorized(ProxyError):
    """The request has no valid API key."""

    code = "unauthorized"


class NotFound(ProxyError):
    """No such resource."""

    code = "not_found"


class Unsupported(ProxyError):
    """The upstream uses a feature this service does not support."""

    code = "unsupported"


class BlockedAddress(ProxyError):
    """The upstream address is refused by the outbound address policy."""

    code = "blocked_address"


class ResolutionNotSupported(ProxyError):
    """The upstream has no data at the asked resolution, but has some coarser."""

    code = "resolution_not_supported"


class NoData(ProxyError):
    """The upstream has no data at that place."""

    code = "no_data"


# Looked up along the exception's MRO, so subclasses inherit their parent's status.
STATUS: dict[type[Exception], int] = {
    BadRequest: 400,
    InvalidInput: 422,
    Unauthorized: 401,
    NotFound: 404,
    Unsupported: 422,
    BlockedAddress: 403,
    ResolutionNotSupported: 422,
    NoData: 422,
    se.InvalidRead: 400,
    se.ReadTooLarge: 400,
    se.ResolutionTooHigh: 409,
    se.SourceError: 502,
    se.SourceTimeout: 504,
    se.SourceUnavailable: 503,
    se.SourceNotFound: 404,
    se.SourceUnsupported: 422,
}


def status_for(exc: BaseException) -> int:
    """HTTP status of an error: the first class of its MRO found in :data:`STATUS`."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The SPEC §7 error body: ``{"error": {"code", "message", "hint"}}``."""
    if isinstance(exc, se.CodedError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.hint:
            error["hint"] = exc.hint
        error.update(exc.extra)
        return {"error": error}
    return {"error": {"code": "internal", "message": "internal server error"}}
