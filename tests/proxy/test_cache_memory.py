"""The memory tier is bounded in bytes and evicts the least recently used."""

from __future__ import annotations

from proxy.cache.entry import CacheEntry
from proxy.cache.memory import ENTRY_OVERHEAD, MemoryTier


def entry(size: int, fill: bytes = b"x") -> CacheEntry:
    return CacheEntry.create(fill * size, "image/png", stored_at=0, ttl=60)


def test_bound_in_bytes_holds_and_oldest_go_first():
    weight = 1000 + ENTRY_OVERHEAD
    tier = MemoryTier(max_bytes=10 * weight)
    for i in range(25):
        tier.put(f"k{i}", entry(1000))
        assert tier.bytes <= tier.max_bytes
    assert len(tier) == 10 and tier.bytes == 10 * weight
    assert tier.get("k14") is None and tier.get("k15") is not None


def test_bytes_not_count_decide():
    tier = MemoryTier(max_bytes=100_000)
    for i in range(10):
        tier.put(f"small{i}", entry(100))
    tier.put("big", entry(90_000))
    # The big entry pushed out small ones: the bound is in bytes.
    assert tier.bytes <= 100_000 and len(tier) < 11 and tier.get("big") is not None


def test_a_get_makes_an_entry_recent():
    weight = 1000 + ENTRY_OVERHEAD
    tier = MemoryTier(max_bytes=3 * weight)
    for name in "abc":
        tier.put(name, entry(1000))
    assert tier.get("a") is not None
    tier.put("d", entry(1000))
    assert tier.get("b") is None and tier.get("a") is not None


def test_an_entry_over_the_bound_is_skipped_and_drops_the_old_value():
    tier = MemoryTier(max_bytes=5000)
    tier.put("k", entry(100))
    tier.put("k", entry(10_000))
    assert tier.get("k") is None and tier.bytes == 0


def test_delete_where_and_items():
    tier = MemoryTier(max_bytes=1_000_000)
    for name in ("a/1", "a/2", "b/1"):
        tier.put(name, entry(10))
    assert tier.delete_where(lambda k: k.startswith("a/")) == 2
    assert [k for k, _ in tier.items()] == ["b/1"]
