"""The tile cache writes behind its answers on a thread of its own, at a lower CPU priority.

Checked on the real thread: its nice value (Linux keeps one per thread) is raised and no
other thread's is; the cache's writes land through it; closing the cache ends it.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from proxy.cache.background import BACKGROUND_NICE, background_pool
from proxy.cache.disk import DiskTier
from proxy.cache.tiles import Fresh, TileCache
from tests.proxy.cache_helpers import KEY, Clock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_background_thread_runs_at_a_lower_priority_and_only_it():
    pool = background_pool("test-background")
    try:
        assert pool.submit(nice).result() >= BACKGROUND_NICE
        assert (
            pool.submit(lambda: threading.current_thread().name)
            .result()
            .startswith("test-background")
        )
    finally:
        pool.shutdown()
    assert nice() < BACKGROUND_NICE  # the calling thread (and the process) keep theirs


async def test_the_cache_writes_behind_on_its_background_thread(tmp_path, executor, monkeypatch):
    seen: list[tuple[str, int]] = []
    real = DiskTier.write_blocking

    def recording(self, rel, entry):  # type: ignore[no-untyped-def]
        seen.append((threading.current_thread().name, nice()))
        return real(self, rel, entry)

    monkeypatch.setattr(DiskTier, "write_blocking", recording)
    cache = TileCache(tmp_path, executor=executor, clock=Clock())
    await cache.start()

    async def fresh(validators):  # type: ignore[no-untyped-def]
        return Fresh(b"tile body", "image/png")

    await cache.get_or_fetch(KEY, fresh, ttl=60)
    await cache.settle()
    assert (tmp_path / KEY.id).exists()
    ((name, priority),) = seen
    assert name.startswith("cache-writer") and priority >= BACKGROUND_NICE
    await cache.close()
    assert cache._own_writer is not None and cache._own_writer._shutdown
