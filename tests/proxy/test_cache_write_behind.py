"""A fetched tile is answered before its disk write; the lock and deletes wait for the write."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from proxy.cache.entry import decode, strong_etag
from proxy.cache.flight import FileLocks
from proxy.cache.tiles import CacheKey, CacheStatus, Fresh, TileCache
from tests.proxy.cache_helpers import FP, KEY, Clock

BODY = b"tile body"


async def fresh(validators):
    return Fresh(BODY, "image/png")


@pytest.fixture
def blocked():
    """An executor whose one thread is held until the test sets the event: writes wait."""
    gate = threading.Event()
    pool = ThreadPoolExecutor(1)
    pool.submit(gate.wait)
    yield pool, gate
    gate.set()
    pool.shutdown(wait=True)


async def test_the_answer_comes_before_the_disk_write_and_the_lock_waits_for_it(tmp_path, blocked):
    pool, gate = blocked
    cache = TileCache(tmp_path, executor=pool, writer=pool, clock=Clock())
    result = await cache.get_or_fetch(KEY, fresh, ttl=60)
    assert result.status is CacheStatus.MISS and result.entry.body == BODY
    path = tmp_path / KEY.id
    assert not path.exists()  # the write waits for the executor
    peer = FileLocks(tmp_path / ".locks")  # another process's view of the key's lock
    assert peer.try_lock(KEY.id) is None  # held until the entry is on disk
    gate.set()
    await cache.settle()
    stored = decode(path.read_bytes())
    assert stored is not None and stored.body == BODY
    assert stored.etag == strong_etag(BODY)  # hashed for the file, off the event loop
    held = peer.try_lock(KEY.id)
    assert held is not None
    os.close(held)


async def test_a_delete_waits_for_the_writes_so_no_entry_comes_back(tmp_path, blocked):
    pool, gate = blocked
    cache = TileCache(tmp_path, executor=pool, writer=pool, clock=Clock())
    await cache.get_or_fetch(KEY, fresh, ttl=60)
    delete = asyncio.ensure_future(cache.delete(FP))
    await asyncio.sleep(0.05)
    assert not delete.done()  # waiting for the pending write
    gate.set()
    gone = await delete
    assert gone.entries == 1
    assert not (tmp_path / KEY.id).exists()
    assert await cache.get(KEY) is None


async def test_keys_of_one_bucket_in_one_process_do_not_wait_for_each_other(tmp_path):
    locks = FileLocks(tmp_path, buckets=1)  # every key in the same bucket
    started, release = [], asyncio.Event()

    def call(name):
        async def run():
            started.append(name)
            await release.wait()
            return name

        return run

    async def nothing():
        return None

    runs = [asyncio.ensure_future(locks.run(k, nothing, call(k))) for k in ("a", "b", "c")]
    await asyncio.sleep(0.05)  # a second flock would poll every 20 ms until the first ends
    assert sorted(started) == ["a", "b", "c"]
    assert FileLocks(tmp_path, buckets=1).try_lock("z") is None  # a peer still waits
    release.set()
    assert await asyncio.gather(*runs) == ["a", "b", "c"]
    held = FileLocks(tmp_path, buckets=1).try_lock("z")  # let go once all are done
    assert held is not None
    os.close(held)


async def test_grouped_writes_each_land_or_fail_alone(tmp_path, executor):
    cache = TileCache(tmp_path, executor=executor, clock=Clock())
    await cache.start()
    (tmp_path / FP[:2] / FP / "tile" / "3").mkdir(parents=True)
    (tmp_path / FP[:2] / FP / "tile" / "3" / "0").write_bytes(b"a file where a folder goes")
    keys = [CacheKey(FP, "tile", 3, x, 0) for x in range(40)]
    entries = [cache.entry(b"body %d" % i, "image/png", 60) for i in range(40)]
    results = await asyncio.gather(
        *(cache.disk.write(k.id, e) for k, e in zip(keys, entries, strict=True)),
        return_exceptions=True,
    )
    assert isinstance(results[0], OSError)  # only the write under the file fails
    assert all(r is None for r in results[1:])
    for key, want in zip(keys[1:], entries[1:], strict=True):
        found = await cache.disk.read(key.id)
        assert found is not None and found.body == want.body


async def test_deleting_a_servers_tiles_forgets_its_decoded_tiles_only(tmp_path, executor):
    cache = TileCache(tmp_path, executor=executor, clock=Clock())
    await cache.start()
    other = "f" * 64
    pixels = np.zeros((256, 256, 4), np.uint8)
    cache.decoded.put(FP, b"a", 1, pixels, True)
    cache.decoded.put(other, b"a", 1, pixels.copy(), True)
    await cache.delete(FP, zooms=range(3, 4))
    assert cache.decoded.get(FP, b"a", 1) is None
    assert cache.decoded.get(other, b"a", 1) is not None


async def test_a_cancelled_writer_leaves_its_batch_and_its_file_to_land(tmp_path, blocked):
    pool, gate = blocked
    cache = TileCache(tmp_path, executor=pool, writer=pool, clock=Clock())
    keys = [CacheKey(FP, "tile", 4, x, 0) for x in range(3)]
    writes = [
        asyncio.ensure_future(cache.disk.write(k.id, cache.entry(b"b%d" % i, "image/png", 60)))
        for i, k in enumerate(keys)
    ]
    await asyncio.sleep(0.01)  # queued behind the blocked executor
    writes[1].cancel()
    gate.set()
    first, cancelled, last = await asyncio.gather(*writes, return_exceptions=True)
    assert first is None and last is None and isinstance(cancelled, asyncio.CancelledError)
    for i, key in enumerate(keys):  # the cancelled caller's file is written all the same
        found = await cache.disk.read(key.id)
        assert found is not None and found.body == b"b%d" % i
