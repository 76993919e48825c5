"""Helpers of the tile-cache tests: a manual clock, recording events, a counting fetch.

Kept in a module of its own (no test collection, light imports) because the cross-process
test runs ``fetch_in_process`` in 'spawn' children that import it by name.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from proxy.cache.tiles import CacheKey, CacheStatus, Fresh, NoEvents, TileCache, Validators

FP = "ab" + "0" * 62
KEY = CacheKey(FP, "tile", 5, 10, 12)


class Clock:
    """A clock that moves only when told (starts at the real time, like file mtimes)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Events(NoEvents):
    """Counts every event by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def hit(self, key: CacheKey) -> None:
        self.counts["hit"] += 1

    def miss(self, key: CacheKey) -> None:
        self.counts["miss"] += 1

    def revalidated(self, key: CacheKey) -> None:
        self.counts["revalidated"] += 1

    def stale(self, key: CacheKey) -> None:
        self.counts["stale"] += 1

    def negative(self, key: CacheKey) -> None:
        self.counts["negative"] += 1

    def join(self, key: CacheKey) -> None:
        self.counts["join"] += 1


class _SharedJoins(NoEvents):
    def __init__(self, waiting: Any) -> None:
        self.waiting = waiting

    def join(self, key: CacheKey) -> None:
        with self.waiting.get_lock():
            self.waiting.value += 1


def fetch_in_process(
    root: str, calls: str, waiting: Any, procs: int, barrier: Any, status: str
) -> None:
    """One worker process: ask for KEY once through its own TileCache over ``root``.

    The answer's status goes to the file ``status``.
    """
    answer = asyncio.run(_ask(Path(root), Path(calls), waiting, procs, barrier))
    Path(status).write_text(answer)


async def _ask(root: Path, calls: Path, waiting: Any, procs: int, barrier: Any) -> str:
    cache = TileCache(root, events=_SharedJoins(waiting), lock_timeout=60)

    async def fetch(validators: Validators | None) -> Fresh:
        with calls.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        # Hold the upstream answer until every other process waits on the lock.
        deadline = time.monotonic() + 30
        while waiting.value < procs - 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return Fresh(b"tile from upstream", "image/png")

    barrier.wait()
    result = await cache.get_or_fetch(KEY, fetch, ttl=3600)
    assert result.entry is not None and result.entry.body == b"tile from upstream"
    # As a worker does at shutdown: the disk write that follows the answer lands first
    # (the process would otherwise end with its lock released and no entry on disk).
    await cache.close()
    return str(CacheStatus(result.status))
