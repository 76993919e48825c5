"""The disk tier: atomic files, damage detected, a byte bound kept, deletes and stats."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.cache.disk import DiskTier, entry_path
from proxy.cache.entry import CacheEntry, encode
from tests.proxy.cache_helpers import FP, Clock

OTHER = "cd" + "1" * 62


def entry(body: bytes, clock: Clock) -> CacheEntry:
    return CacheEntry.create(body, "image/png", stored_at=clock(), ttl=60)


def on_disk(root: Path) -> list[Path]:
    """Entry files, as a plain scan sees them."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tier(tmp_path, clock, executor) -> DiskTier:
    disk = DiskTier(tmp_path / "cache", 100_000, executor=executor, clock=clock)
    await disk.start()
    return disk


async def test_write_then_read_in_the_layout(tier, clock, tmp_path):
    rel = entry_path(FP, "tile", 3, 4, 5)
    stored = entry(b"body", clock)
    await tier.write(rel, stored)
    assert (tmp_path / "cache" / "ab" / FP / "tile" / "3" / "4" / "5").is_file()
    assert await tier.read(rel) == stored
    assert await tier.read(entry_path(FP, "tile", 3, 4, 6)) is None


@pytest.mark.parametrize("inline_max", [0, 1 << 20])
async def test_executor_and_inline_reads_agree(tmp_path, clock, executor, inline_max):
    disk = DiskTier(tmp_path, executor=executor, clock=clock, inline_max=inline_max)
    rel = entry_path(FP, "tile", 1, 0, 0)
    stored = entry(os.urandom(300_000), clock)
    await disk.write(rel, stored)
    assert await disk.read(rel) == stored
    assert disk.read_blocking(rel) == stored


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
async def test_damaged_file_is_not_served_and_is_deleted(tier, clock, tmp_path, damage):
    rel = entry_path(FP, "tile", 3, 4, 5)
    await tier.write(rel, entry(b"x" * 5000, clock))
    path = tmp_path / "cache" / rel
    data = path.read_bytes()
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip":
        data = data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]
    else:
        data = b""
    path.write_bytes(data)
    assert await tier.read(rel) is None
    assert not path.exists()


async def test_a_temp_file_left_by_a_crash_is_never_read_and_is_swept(tier, clock, tmp_path):
    # A process killed between write and rename leaves a complete temp file, no entry.
    rel = entry_path(FP, "tile", 3, 4, 5)
    folder = tmp_path / "cache" / rel.rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    temp = folder / ".5.4242.deadbeef.tmp"
    head, body = encode(entry(b"never renamed", clock))
    temp.write_bytes(head + body)
    assert await tier.read(rel) is None
    await tier.sweep()
    assert temp.exists()  # young: may still be being written by a live process
    clock.advance(3600)
    await tier.sweep()
    assert not temp.exists()


async def test_a_failed_write_leaves_no_temp_file(tier, clock, tmp_path, monkeypatch):
    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    rel = entry_path(FP, "tile", 3, 4, 5)
    with pytest.raises(OSError):
        await tier.write(rel, entry(b"abc", clock))
    assert list((tmp_path / "cache").rglob("*.tmp")) == []


async def test_bound_holds_after_filling_past_it(tier, clock, tmp_path):
    for i in range(40):  # 40 x ~5 KB into a 100 KB tier
        await tier.write(entry_path(FP, "tile", 10, i, 0), entry(os.urandom(5000), clock))
        clock.advance(1)
    await tier.wait_sweep()
    sizes = sum(p.stat().st_size for p in on_disk(tmp_path / "cache"))
    assert sizes <= 100_000
    assert tier.bytes <= 100_000
    # The least recently written went first.
    assert await tier.read(entry_path(FP, "tile", 10, 0, 0)) is None
    assert await tier.read(entry_path(FP, "tile", 10, 39, 0)) is not None


async def test_a_hit_keeps_an_entry_from_eviction(tmp_path, clock, executor):
    disk = DiskTier(tmp_path, 60_000, executor=executor, clock=clock, touch_after=60)
    first = entry_path(FP, "tile", 10, 0, 0)
    for i in range(8):
        await disk.write(entry_path(FP, "tile", 10, i, 0), entry(os.urandom(5000), clock))
        clock.advance(1)
    clock.advance(120)
    assert await disk.read(first) is not None  # older than touch_after: its mtime moves
    for i in range(8, 14):
        await disk.write(entry_path(FP, "tile", 10, i, 0), entry(os.urandom(5000), clock))
        clock.advance(1)
    await disk.wait_sweep()
    assert await disk.read(first) is not None
    assert await disk.read(entry_path(FP, "tile", 10, 1, 0)) is None


async def test_start_sweeps_what_an_earlier_run_left(tmp_path, clock, executor):
    big = DiskTier(tmp_path, 10**9, executor=executor, clock=clock)
    for i in range(30):
        await big.write(entry_path(FP, "tile", 10, i, 0), entry(os.urandom(5000), clock))
    small = DiskTier(tmp_path, 50_000, executor=executor, clock=clock)
    await small.start()
    assert sum(p.stat().st_size for p in on_disk(tmp_path)) <= 50_000


def test_only_one_process_sweeps_at_a_time(tmp_path, clock):
    import fcntl

    disk = DiskTier(tmp_path, 10, clock=clock)
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".sweep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process sweeping (flock is per open file)
        assert disk.sweep_blocking() is None
    assert disk.sweep_blocking() == 0


async def fill(tier: DiskTier, clock: Clock) -> None:
    for fp in (FP, OTHER):
        for ns in ("tile", "rendered:png@2x"):
            for z in (3, 4, 5):
                for x in range(2):
                    for y in range(2):
                        await tier.write(entry_path(fp, ns, z, x, y), entry(b"t" * 100, clock))


@pytest.fixture
async def full(tmp_path, clock):
    with ThreadPoolExecutor(2) as pool:
        disk = DiskTier(tmp_path, 10**9, executor=pool, clock=clock)
        await fill(disk, clock)
        yield disk


async def test_stats_per_fingerprint(full):
    stats = await full.stats(FP)
    assert stats.entries == 24
    assert stats.bytes == 24 * os.path.getsize(full.root / entry_path(FP, "tile", 3, 0, 0))
    assert (await full.stats("ee" * 32)).entries == 0


async def test_delete_all_of_one_fingerprint(full):
    gone = await full.delete(FP)
    assert gone.entries == 24
    assert (await full.stats(FP)).entries == 0
    assert (await full.stats(OTHER)).entries == 24
    assert not (full.root / "ab" / FP).exists()


async def test_delete_a_zoom_range(full):
    gone = await full.delete(FP, zooms=range(4, 6))
    assert gone.entries == 16
    assert await full.read(entry_path(FP, "tile", 3, 1, 1)) is not None
    assert await full.read(entry_path(FP, "tile", 4, 1, 1)) is None
    assert (await full.stats(OTHER)).entries == 24


async def test_delete_a_tile_range_in_one_namespace(full):
    gone = await full.delete(FP, range(4, 5), xs=range(1, 2), ys=range(0, 2), namespaces=["tile"])
    assert gone.entries == 2
    assert await full.read(entry_path(FP, "tile", 4, 1, 0)) is None
    assert await full.read(entry_path(FP, "tile", 4, 0, 0)) is not None
    assert await full.read(entry_path(FP, "rendered:png@2x", 4, 1, 0)) is not None
