"""One cached answer of an upstream, and its binary file format.

A file is ``MAGIC`` (4 bytes, the format version in its last byte), the length and CRC-32
of the header (uint32 each, little endian), the header (orjson) and the body. The header
carries the body's length and CRC-32, so a truncated, padded or bit-flipped file is told
apart from a good one before anything is served from it.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

MAGIC = b"IPC\x01"
_PREFIX = struct.Struct("<4sII")
# A header is a few hundred bytes; anything larger is a corrupt length field.
_MAX_HEADER = 64 * 1024


def strong_etag(body: bytes) -> str:
    """Our own strong ETag of ``body``: the quoted hex of a 128-bit BLAKE2b digest."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


_EMPTY_ETAG = strong_etag(b"")


# Not slotted: ``etag`` and ``headers`` are cached properties, computed at first use.
@attrs.frozen(kw_only=True, slots=False)
class CacheEntry:
    """A cached tile (or a negative answer), ready to be served as is.

    ``etag`` is computed when first asked, once per entry: by the disk write (in the
    executor, where the file's header stores it) for a fetched tile, so a streaming read
    never hashes a body on the event loop; read back from the file otherwise. ``headers``
    is built once per entry, so the hit path builds no dict. ``ttl`` is the lifetime the
    entry was written with; the cache judges freshness with the caller's current ttl, so
    a changed ``cache_ttl`` applies at once.
    """

    body: bytes
    content_type: str
    stored_at: float
    ttl: float
    upstream_etag: str | None = None
    upstream_last_modified: str | None = None
    # A 404/empty answer, cached briefly; its body is empty.
    negative: bool = False
    # The ETag when already known (read from a file); None: computed from the body.
    known_etag: str | None = attrs.field(default=None, alias="etag", eq=False, repr=False)

    @functools.cached_property
    def etag(self) -> str:
        """Our strong ETag of the body (see :func:`strong_etag`)."""
        return self.known_etag or strong_etag(self.body)

    @functools.cached_property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers: ETag, Cache-Control and Content-Type."""
        headers = {"ETag": self.etag, "Cache-Control": f"max-age={max(0, int(self.ttl))}"}
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return headers

    @classmethod
    def create(
        cls,
        body: bytes,
        content_type: str,
        *,
        stored_at: float,
        ttl: float,
        upstream_etag: str | None = None,
        upstream_last_modified: str | None = None,
    ) -> CacheEntry:
        """A positive entry for ``body`` (its ETag computed at first use, once)."""
        return cls(
            body=body,
            content_type=content_type,
            stored_at=stored_at,
            ttl=ttl,
            upstream_etag=upstream_etag,
            upstream_last_modified=upstream_last_modified,
        )

    @classmethod
    def missing(cls, *, stored_at: float, ttl: float) -> CacheEntry:
        """A negative entry: the upstream has no data there."""
        return cls(
            body=b"",
            content_type="",
            etag=_EMPTY_ETAG,
            stored_at=stored_at,
            ttl=ttl,
            negative=True,
        )

    def refreshed(self, now: float, ttl: float) -> CacheEntry:
        """The same entry, stored again at ``now`` (a 304 revalidation)."""
        return attrs.evolve(self, stored_at=now, ttl=ttl, etag=self.etag)

    def age(self, now: float) -> float:
        """Seconds since the entry was stored (or last revalidated)."""
        return now - self.stored_at


def encode(entry: CacheEntry) -> tuple[bytes, bytes]:
    """The file of ``entry`` as (prefix and header, body): written with one ``writev``."""
    header = orjson.dumps(
        {
            "ct": entry.content_type,
            "etag": entry.etag,
            "at": entry.stored_at,
            "ttl": entry.ttl,
            "uetag": entry.upstream_etag,
            "ulm": entry.upstream_last_modified,
            "neg": entry.negative,
            "len": len(entry.body),
            "crc": zlib.crc32(entry.body),
        }
    )
    return _PREFIX.pack(MAGIC, len(header), zlib.crc32(header)) + header, entry.body


def decode(data: bytes | bytearray | memoryview) -> CacheEntry | None:
    """The entry in ``data``, or None when it is not a whole, intact entry file."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        return None
    magic, size, head_crc = _PREFIX.unpack_from(view)
    start = _PREFIX.size + size
    if magic != MAGIC or size > _MAX_HEADER or start > len(view):
        return None
    header = view[_PREFIX.size : start]
    if zlib.crc32(header) != head_crc:
        return None
    try:
        head: dict[str, Any] = orjson.loads(header)
        length, crc = int(head["len"]), int(head["crc"])
        body = view[start:]
        if len(body) != length or zlib.crc32(body) != crc:
            return None
        return CacheEntry(
            body=bytes(body),
            content_type=str(head["ct"]),
            etag=str(head["etag"]),
            stored_at=float(head["at"]),
            ttl=float(head["ttl"]),
            upstream_etag=head["uetag"],
            upstream_last_modified=head["ulm"],
            negative=bool(head["neg"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
