"""A bounded memory of decoded tiles, so a window read again (or overlapping) skips decoding.

Decoding is most of the CPU of a read whose tiles are cached (81 JPEG tiles of a 2048²
window: ~30-50 ms on one core, against a few ms to paste them). A detector reading
overlapping windows, or the same window twice, meets the same tiles again.

Entries are keyed by the encoded bytes themselves (and the decode scale): equal bytes decode
to equal pixels, so a hit can never serve stale pixels, whatever the source. Python keeps
a bytes object's hash once computed, so the lookup of a tile the byte cache already holds
costs a dict probe. A ``scope`` (the proxy uses the server's fingerprint) groups entries so
that purging a server's cache drops its decoded tiles too.

Pixels are kept as (4, h, w) arrays in the layout of the read that decoded them: a view
of interleaved RGBA, or band-first planes for a read into an NPY answer (a detector's next
read pastes those at memcpy speed). Bounded in bytes (decoded pixels plus the encoded bytes
the key holds), least recently used evicted first. Thread-safe: reads decode in executor
threads.
"""

from __future__ import annotations

import threading
from typing import Protocol

from cachetools import LRUCache

from streaming.codecs import Bands

DEFAULT_DECODED_BYTES = 128 * 1024 * 1024
ENTRY_OVERHEAD = 512  # the key tuple, the array object, the LRU's slot


class TileMemo(Protocol):
    """What the mosaic asks of a memory of decoded tiles (see :class:`DecodedTiles`)."""

    def get(self, data: bytes, reduce: int) -> tuple[Bands, bool] | None:
        """The read-only pixels of ``data`` at 1/``reduce`` scale and its blank flag."""

    def put(self, data: bytes, reduce: int, pixels: Bands, blank: bool) -> None:
        """Keep the decoded ``pixels`` of ``data`` (made read-only here)."""


_Key = tuple[str, bytes, int]


def _weight(value: tuple[Bands, bool, int]) -> int:
    return value[0].nbytes + value[2] + ENTRY_OVERHEAD


class DecodedTiles:
    """Decoded tiles by (scope, encoded bytes, scale), bounded to ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_DECODED_BYTES) -> None:
        self._lru: LRUCache[_Key, tuple[Bands, bool, int]] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=_weight
        )
        self._lock = threading.Lock()
        self.enabled = max_bytes > 0

    def scoped(self, scope: str) -> ScopedTiles:
        """The :class:`TileMemo` of one scope (one server) over this memory."""
        return ScopedTiles(self, scope)

    def get(self, scope: str, data: bytes, reduce: int) -> tuple[Bands, bool] | None:
        """The pixels and blank flag kept for ``data``, or None."""
        if not self.enabled:
            return None
        with self._lock:
            found = self._lru.get((scope, data, reduce))
        return None if found is None else (found[0], found[1])

    def put(self, scope: str, data: bytes, reduce: int, pixels: Bands, blank: bool) -> None:
        """Keep ``pixels`` (read-only from now on); one over the bound is not kept."""
        if not self.enabled:
            return
        pixels.flags.writeable = False
        value = (pixels, blank, len(data))
        if _weight(value) > self._lru.maxsize:
            return
        with self._lock:
            self._lru[(scope, data, reduce)] = value

    def drop(self, scope: str) -> int:
        """Forget every tile of ``scope``; how many were dropped."""
        with self._lock:
            doomed = [key for key in self._lru.keys() if key[0] == scope]
            for key in doomed:
                del self._lru[key]
        return len(doomed)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._lru.clear()

    @property
    def bytes(self) -> int:
        """Weight of the tiles kept."""
        return int(self._lru.currsize)

    def __len__(self) -> int:
        """How many decoded tiles are kept."""
        return len(self._lru)


class ScopedTiles:
    """A :class:`TileMemo` over one scope of a :class:`DecodedTiles`."""

    def __init__(self, tiles: DecodedTiles, scope: str) -> None:
        self.tiles, self.scope = tiles, scope

    def get(self, data: bytes, reduce: int) -> tuple[Bands, bool] | None:
        """See :meth:`DecodedTiles.get`."""
        return self.tiles.get(self.scope, data, reduce)

    def put(self, data: bytes, reduce: int, pixels: Bands, blank: bool) -> None:
        """See :meth:`DecodedTiles.put`."""
        self.tiles.put(self.scope, data, reduce, pixels, blank)
