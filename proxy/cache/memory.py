"""The memory tier: an LRU of cache entries bounded in bytes, not in entries.

Tiles range from a few hundred bytes (an empty PNG) to hundreds of KB (a JPEG aerial at
512 px), so a bound in entries says nothing about memory. Each entry weighs its body plus
a fixed overhead for the entry object, its header dict and the LRU's bookkeeping. Used
from the event loop only (cachetools caches are not thread-safe).
"""

from __future__ import annotations

from collections.abc import Callable

from cachetools import LRUCache

from proxy.cache.entry import CacheEntry

DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
# Measured roughly with sys.getsizeof over an entry, its headers dict and strings, the
# key and an OrderedDict slot: about 1 KB besides the body.
ENTRY_OVERHEAD = 1024


def _weight(entry: CacheEntry) -> int:
    return len(entry.body) + ENTRY_OVERHEAD


class MemoryTier:
    """Entries by key id, least recently used evicted first once ``max_bytes`` is reached."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self._lru: LRUCache[str, CacheEntry] = LRUCache(maxsize=max_bytes, getsizeof=_weight)

    def get(self, key_id: str) -> CacheEntry | None:
        """The entry of ``key_id`` (and mark it recently used), or None."""
        return self._lru.get(key_id)  # no KeyError raised and caught per miss

    def put(self, key_id: str, entry: CacheEntry) -> None:
        """Keep ``entry``, evicting the least recently used (one over the bound is skipped)."""
        if _weight(entry) > self._lru.maxsize:
            self._lru.pop(key_id, None)
            return
        self._lru[key_id] = entry

    def pop(self, key_id: str) -> None:
        """Forget ``key_id``."""
        self._lru.pop(key_id, None)

    def items(self) -> list[tuple[str, CacheEntry]]:
        """A snapshot of the entries, least recently used first (their order is kept)."""
        # Reading every item moves each to the end in turn: the relative order is unchanged.
        return list(self._lru.items())

    def delete_where(self, match: Callable[[str], bool]) -> int:
        """Forget every key id ``match`` accepts; how many were dropped."""
        doomed = [k for k in self._lru.keys() if match(k)]
        for key_id in doomed:
            del self._lru[key_id]
        return len(doomed)

    def clear(self) -> None:
        """Forget everything."""
        self._lru.clear()

    @property
    def bytes(self) -> int:
        """Weight of the entries kept (bodies plus overhead)."""
        return int(self._lru.currsize)

    @property
    def max_bytes(self) -> int:
        """The bound."""
        return int(self._lru.maxsize)

    def __len__(self) -> int:
        """How many entries are kept."""
        return len(self._lru)
