"""Values of the tile cache's interface: keys, fetch outcomes, results, events."""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from proxy.cache.disk import entry_path
from proxy.cache.entry import CacheEntry

_FINGERPRINT = re.compile(r"[0-9a-f]{8,128}")
# Path-safe, and never starting with a dot (dot names are locks and temp files).
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}")


@attrs.frozen
class CacheKey:
    """What a cached entry answers: a server fingerprint, a namespace and a tile.

    ``namespace`` separates kinds of entries of one server: ``"tile"`` (upstream tiles),
    ``"rendered:png@2x"`` (converted output), ``"meta"`` (metatiles; z/x/y then index
    metatiles). ``id`` is the entry's path under the cache root and its memory key, built
    once here.
    """

    fingerprint: str
    namespace: str
    z: int
    x: int
    y: int
    id: str = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError("a cache fingerprint is lowercase hex")
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(f"invalid cache namespace {self.namespace!r}")
        if min(self.z, self.x, self.y) < 0:
            raise ValueError("tile indices are not negative")
        path = entry_path(self.fingerprint, self.namespace, self.z, self.x, self.y)
        object.__setattr__(self, "id", path)


@attrs.frozen
class Validators:
    """What the upstream said about the stored body, for a conditional request."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` headers for the revalidation."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@attrs.frozen
class Fresh:
    """The upstream sent a body (200)."""

    body: bytes
    content_type: str
    upstream_etag: str | None = None
    upstream_last_modified: str | None = None


@attrs.frozen
class NotModified:
    """The upstream answered 304 to the conditional request: the stored body still holds."""


@attrs.frozen
class NoData:
    """The upstream has no data there (404 or an empty answer)."""


FetchOutcome = Fresh | NotModified | NoData
Fetch = Callable[[Validators | None], Awaitable[FetchOutcome]]


class CacheStatus(enum.StrEnum):
    """Where an answer came from; the value is the ``X-Cache`` header's."""

    HIT = "HIT"  # fresh in the cache, or revalidated by a 304
    MISS = "MISS"  # fetched for this request (or by a fetch it joined)
    STALE = "STALE"  # expired, served because the upstream failed
    NEGATIVE = "NEGATIVE"  # the upstream has no data there (cached or just fetched)


@attrs.frozen
class CacheResult:
    """An answer of the cache: the entry (None when there is no data) and its status."""

    entry: CacheEntry | None
    status: CacheStatus


NEGATIVE = CacheResult(None, CacheStatus.NEGATIVE)


@attrs.frozen
class CacheStats:
    """One server's entries: on disk (a scan) and in memory."""

    entries: int
    bytes: int
    memory_entries: int
    memory_bytes: int


class CacheEvents(Protocol):
    """Hooks for metrics, called once per answer with the key; keep them cheap."""

    def hit(self, key: CacheKey) -> None:
        """A fresh entry was served."""

    def miss(self, key: CacheKey) -> None:
        """The upstream was asked (a fetch or revalidation started)."""

    def revalidated(self, key: CacheKey) -> None:
        """A 304 refreshed an expired entry."""

    def stale(self, key: CacheKey) -> None:
        """An expired entry was served because the upstream failed."""

    def negative(self, key: CacheKey) -> None:
        """A cached negative answer was served."""

    def join(self, key: CacheKey) -> None:
        """A request waited for a fetch already running (in this process or another)."""


class NoEvents:
    """Events that do nothing (the default)."""

    def hit(self, key: CacheKey) -> None:
        """Ignore."""

    miss = revalidated = stale = negative = join = hit
