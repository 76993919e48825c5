"""Errors of the streaming library.

StreamingError
├── InvalidRead            a read or request that cannot be served as asked
│   ├── InvalidWindow      a zero, negative or oversized window or output size
│   └── WindowOutside      a window partly or fully outside the image
├── AOIError               an area of interest that is not usable GeoJSON polygons
├── InvalidCRS             a CRS that is unknown or cannot hold an image
├── ReadTooLarge           a read past its pixel or request budget
├── ResolutionTooHigh      a read finer than the detector needs (SPEC §5)
└── SourceError            the upstream failed (the source interface's errors)
    ├── SourceTimeout      no answer in time
    ├── SourceUnavailable  5xx or connection refused
    ├── SourceTLSError     the TLS handshake failed
    ├── SourceAuthError    401/403, or ArcGIS 498/499 in a 200 body
    ├── SourceNotFound     404: no tile there
    ├── SourceUnsupported  the upstream uses a feature we do not read (LERC, a tiling scheme)
    └── SourceBadResponse  undecodable or oversized image, unexpected document
        ├── SourceImageTooLarge     an image larger than asked (refused before decoding)
        ├── SourceTruncatedImage    an image cut short (no end marker)
        ├── SourceServiceException  an OGC ServiceException/ExceptionReport (often with HTTP 200)
        └── SourceWrongContentType  not an image where an image was expected

Each class carries a stable ``code``; HTTP statuses live in the web layer only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CodedError(Exception):
    """An error with a stable ``code``, a message and an optional hint (SPEC §7's body).

    ``extra`` holds more JSON-ready context for the error body (e.g. a suggested zoom).
    The service's own errors derive from it too, so one function renders them all.
    """

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.extra = extra


class StreamingError(CodedError):
    """Root of every streaming error."""

    code = "streaming_error"


class InvalidRead(StreamingError):
    """A read that cannot be served as asked."""

    code = "invalid_read"


class InvalidWindow(InvalidRead):
    """A window or output size that is zero, negative or past the limits."""

    code = "invalid_window"


class WindowOutside(InvalidRead):
    """A window that is not entirely inside the image."""

    code = "window_outside"


class AOIError(StreamingError):
    """An area of interest that is not usable (bad GeoJSON, not a polygon, invalid...)."""

    code = "invalid_aoi"


class InvalidCRS(StreamingError):
    """A CRS that is unknown, or one an image cannot be laid out in."""

    code = "invalid_crs"


class ReadTooLarge(StreamingError):
    """A read past its pixel or upstream-request budget."""

    code = "read_too_large"


class ResolutionTooHigh(StreamingError):
    """A read finer than the detector's resolution allows."""

    code = "resolution_too_high"


class SourceError(StreamingError):
    """The upstream source failed."""

    code = "upstream_error"


class SourceTimeout(SourceError):
    """The upstream did not answer in time."""

    code = "upstream_timeout"


class SourceUnavailable(SourceError):
    """The upstream answered 5xx or refused the connection."""

    code = "upstream_unavailable"


class SourceTLSError(SourceError):
    """The TLS handshake with the upstream failed."""

    code = "upstream_tls"


class SourceAuthError(SourceError):
    """The upstream refused the credentials."""

    code = "upstream_auth"


class SourceNotFound(SourceError):
    """The upstream has no data for that request (404)."""

    code = "upstream_not_found"


class SourceUnsupported(SourceError):
    """The upstream uses a feature this library does not read (LERC, a tiling scheme...)."""

    code = "unsupported"


class SourceBadResponse(SourceError):
    """The upstream answered something that is not the expected image or document."""

    code = "upstream_bad_response"


class SourceImageTooLarge(SourceBadResponse):
    """The upstream image is larger than the request asked for (read from its header)."""

    code = "upstream_image_too_large"


class SourceTruncatedImage(SourceBadResponse):
    """The upstream image stops before its end (a connection or a cache cut it short)."""

    code = "upstream_truncated_image"


class SourceServiceException(SourceBadResponse):
    """The upstream answered an OGC ServiceException or ExceptionReport."""

    code = "upstream_service_exception"


class SourceWrongContentType(SourceBadResponse):
    """The upstream answered something that is not an image where an image was expected."""

    code = "upstream_wrong_content_type"


class SourceQuotaExceeded(SourceError):
    """A budget of the upstream's requests or bytes is spent: nothing was sent.

    ``resets_at`` (Unix seconds) says when the quota admits requests again; a job waits
    until then instead of failing.
    """

    code = "upstream_quota_exceeded"

    def __init__(self, message: str, *, resets_at: float, hint: str | None = None, **extra: Any):
        super().__init__(message, hint=hint, resets_at=resets_at, **extra)
        self.resets_at = resets_at
