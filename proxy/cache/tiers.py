"""What the tile cache needs of the tier under its memory and of its cross-process locks.

The local disk tier and file locks implement them, or the shared Redis tier and Redis locks
(``cache_url``): :class:`proxy.cache.tiles.TileCache` takes either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Protocol, TypeVar

from proxy.cache.entry import CacheEntry
from proxy.cache.scan import DiskStats

T = TypeVar("T")


class LowerTier(Protocol):
    """The tier under memory: the local disk, or the shared Redis tier."""

    async def read(self, key_id: str) -> CacheEntry | None:
        """The entry stored under ``key_id``, or ``None`` (a miss, a damaged value, a failure)."""

    async def write(self, key_id: str, entry: CacheEntry, *, behind: bool = False) -> None:
        """Store ``entry`` under ``key_id``; ``behind``: only peers wait for it, so it may
        wait for a quiet moment (the disk tier does)."""

    async def delete(
        self,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> DiskStats:
        """Delete a server's entries, all or those in the ranges; what was deleted."""

    async def stats(self, fingerprint: str) -> DiskStats:
        """Entries and bytes held for a server."""


class KeyLocks(Protocol):
    """Single flight across processes: file locks, or Redis locks across replicas."""

    async def run(
        self,
        name: str,
        done: Callable[[], Awaitable[T | None]],
        call: Callable[[], Awaitable[T]],
        on_wait: Callable[[], None] | None = None,
    ) -> T:
        """``done()`` if a peer stored it, else ``call()`` under the lock of ``name``."""
