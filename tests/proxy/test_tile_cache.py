"""TileCache: tiers, revalidation, stale-if-error, negative caching, put/get, delete, stats."""

from __future__ import annotations

import pytest

from proxy.cache.entry import CacheEntry
from proxy.cache.tiles import (
    CacheKey,
    CacheStatus,
    Fresh,
    NoData,
    NotModified,
    TileCache,
    Validators,
)
from streaming.errors import SourceBadResponse, SourceNotFound, SourceTimeout, SourceUnavailable
from tests.proxy.cache_helpers import FP, KEY, Clock, Events


class Upstream:
    """A scripted fetch: answers (or raises) the next item, recording the validators."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.seen: list[Validators | None] = []

    async def __call__(self, validators):
        self.seen.append(validators)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


V1 = Fresh(
    b"version 1", "image/png", upstream_etag='"u1"', upstream_last_modified="Mon, 01 Jan 2024"
)
V2 = Fresh(b"version 2", "image/jpeg", upstream_etag='"u2"')


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def cache(tmp_path, executor, clock, events) -> TileCache:
    tiles = TileCache(tmp_path / "cache", executor=executor, clock=clock, events=events)
    await tiles.start()
    return tiles


async def reopened(cache: TileCache, clock: Clock) -> TileCache:
    """Another TileCache over the same folder: empty memory, same disk (a restart).

    After the writes of the first settle, as a shutdown waits for them (``close``).
    """
    await cache.settle()
    return TileCache(cache.disk.root, executor=cache.disk._executor, clock=clock)


async def test_miss_then_memory_hit_then_disk_hit(cache, clock, events):
    upstream = Upstream(V1)
    miss = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert miss.status is CacheStatus.MISS and miss.entry.body == b"version 1"
    assert upstream.seen == [None]
    hit = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert hit.status is CacheStatus.HIT and hit.entry is miss.entry
    restarted = await reopened(cache, clock)
    from_disk = await restarted.get_or_fetch(KEY, upstream, ttl=60)
    assert from_disk.status is CacheStatus.HIT and from_disk.entry == miss.entry
    assert restarted.memory.get(KEY.id) is not None  # promoted
    assert events.counts == {"miss": 1, "hit": 1}


async def test_hit_headers_are_precomputed(cache):
    result = await cache.get_or_fetch(KEY, Upstream(V1), ttl=300)
    assert result.entry.headers == {
        "ETag": result.entry.etag,
        "Cache-Control": "max-age=300",
        "Content-Type": "image/png",
    }


async def test_revalidation_sends_stored_validators_and_304_refreshes(cache, clock, events):
    upstream = Upstream(V1, NotModified())
    first = await cache.get_or_fetch(KEY, upstream, ttl=60)
    clock.advance(61)
    again = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert upstream.seen[1] == Validators('"u1"', "Mon, 01 Jan 2024")
    assert upstream.seen[1].headers() == {
        "If-None-Match": '"u1"',
        "If-Modified-Since": "Mon, 01 Jan 2024",
    }
    assert again.status is CacheStatus.HIT
    assert again.entry.body == first.entry.body and again.entry.etag == first.entry.etag
    assert again.entry.stored_at == clock.now
    # Refreshed on disk too: a restart sees it fresh, no fetch.
    restarted = await reopened(cache, clock)
    assert (await restarted.get_or_fetch(KEY, Upstream(), ttl=60)).status is CacheStatus.HIT
    assert events.counts["revalidated"] == 1


async def test_a_200_on_revalidation_replaces_the_entry(cache, clock):
    upstream = Upstream(V1, V2)
    first = await cache.get_or_fetch(KEY, upstream, ttl=60)
    clock.advance(61)
    second = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert second.status is CacheStatus.MISS
    assert (second.entry.body, second.entry.content_type) == (b"version 2", "image/jpeg")
    assert second.entry.etag != first.entry.etag
    assert (await (await reopened(cache, clock)).get(KEY)).body == b"version 2"


async def test_no_validators_without_upstream_ones(cache, clock):
    upstream = Upstream(Fresh(b"plain", "image/png"), Fresh(b"plain 2", "image/png"))
    await cache.get_or_fetch(KEY, upstream, ttl=60)
    clock.advance(61)
    await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert upstream.seen == [None, None]


async def test_a_304_to_an_unconditional_request_is_an_error(cache):
    with pytest.raises(SourceBadResponse):
        await cache.get_or_fetch(KEY, Upstream(NotModified()), ttl=60)


@pytest.mark.parametrize(
    "error",
    [SourceUnavailable("down"), SourceTimeout("slow"), SourceUnavailable("breaker open")],
)
async def test_stale_if_error_serves_the_expired_entry(cache, clock, events, error):
    upstream = Upstream(V1, error)
    first = await cache.get_or_fetch(KEY, upstream, ttl=60)
    clock.advance(10_000)
    stale = await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert stale.status is CacheStatus.STALE and stale.entry == first.entry
    assert events.counts["stale"] == 1


async def test_stale_if_error_from_disk_after_a_restart(cache, clock):
    await cache.get_or_fetch(KEY, Upstream(V1), ttl=60)
    clock.advance(10_000)
    restarted = await reopened(cache, clock)
    stale = await restarted.get_or_fetch(KEY, Upstream(SourceTimeout("x")), ttl=60)
    assert stale.status is CacheStatus.STALE and stale.entry.body == b"version 1"


async def test_an_error_with_nothing_stored_is_raised_and_not_cached(cache):
    upstream = Upstream(SourceUnavailable("down"), V1)
    with pytest.raises(SourceUnavailable):
        await cache.get_or_fetch(KEY, upstream, ttl=60)
    assert await cache.get(KEY) is None
    assert (await cache.get_or_fetch(KEY, upstream, ttl=60)).status is CacheStatus.MISS


async def test_other_exceptions_are_not_stale_served(cache, clock):
    await cache.get_or_fetch(KEY, Upstream(V1), ttl=60)
    clock.advance(61)
    with pytest.raises(RuntimeError):
        await cache.get_or_fetch(KEY, Upstream(RuntimeError("bug")), ttl=60)


@pytest.mark.parametrize("nothing", [NoData(), SourceNotFound("404")])
async def test_negative_caching_expires_after_negative_ttl(cache, clock, events, nothing):
    upstream = Upstream(nothing, V1)
    first = await cache.get_or_fetch(KEY, upstream, ttl=3600, negative_ttl=30)
    assert first.status is CacheStatus.NEGATIVE and first.entry is None
    clock.advance(29)
    again = await cache.get_or_fetch(KEY, upstream, ttl=3600, negative_ttl=30)
    assert again.status is CacheStatus.NEGATIVE and len(upstream.seen) == 1
    assert events.counts["negative"] == 1
    clock.advance(2)
    later = await cache.get_or_fetch(KEY, upstream, ttl=3600, negative_ttl=30)
    assert later.status is CacheStatus.MISS and later.entry.body == b"version 1"
    assert upstream.seen == [None, None]  # a negative entry has no validators


async def test_default_negative_ttl_is_the_caches(tmp_path, executor, clock):
    cache = TileCache(tmp_path, executor=executor, clock=clock, negative_ttl=5)
    upstream = Upstream(NoData(), NoData())
    await cache.get_or_fetch(KEY, upstream, ttl=3600)
    clock.advance(6)
    await cache.get_or_fetch(KEY, upstream, ttl=3600)
    assert len(upstream.seen) == 2


async def test_a_corrupt_disk_entry_is_fetched_again(cache, clock):
    await cache.get_or_fetch(KEY, Upstream(V1), ttl=60)
    await cache.settle()
    path = cache.disk.root / KEY.id
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    restarted = await reopened(cache, clock)
    upstream = Upstream(V2)
    result = await restarted.get_or_fetch(KEY, upstream, ttl=60)
    assert result.status is CacheStatus.MISS and result.entry.body == b"version 2"
    assert upstream.seen == [None]  # not revalidated: the damaged entry was never seen
    assert (await (await reopened(restarted, clock)).get(KEY)).body == b"version 2"


async def test_put_stores_both_tiers_and_get_does_not_fetch(cache, clock):
    keys = [CacheKey(FP, "meta", 4, x, y) for x in range(2) for y in range(2)]
    for i, key in enumerate(keys):
        await cache.put(key, cache.entry(b"cut %d" % i, "image/png", 60, upstream_etag='"m"'))
    restarted = await reopened(cache, clock)
    assert [(await restarted.get(k)).body for k in keys] == [b"cut 0", b"cut 1", b"cut 2", b"cut 3"]
    assert await restarted.get(CacheKey(FP, "meta", 4, 5, 5)) is None


async def test_get_returns_expired_entries(cache, clock):
    await cache.get_or_fetch(KEY, Upstream(V1), ttl=60)
    clock.advance(10_000)
    assert (await cache.get(KEY)).body == b"version 1"


async def test_a_lower_ttl_applies_to_stored_entries(cache, clock):
    upstream = Upstream(V1, V2)
    await cache.get_or_fetch(KEY, upstream, ttl=3600)
    clock.advance(120)
    assert (await cache.get_or_fetch(KEY, upstream, ttl=60)).entry.body == b"version 2"


async def test_delete_reaches_memory_and_disk(cache):
    other = CacheKey(FP, "tile", 6, 1, 1)
    await cache.get_or_fetch(KEY, Upstream(V1), ttl=60)
    await cache.get_or_fetch(other, Upstream(V1), ttl=60)
    gone = await cache.delete(FP, zooms=range(KEY.z, KEY.z + 1))
    assert gone.entries == 1
    assert await cache.get(KEY) is None and await cache.get(other) is not None
    stats = await cache.stats(FP)
    assert (stats.entries, stats.memory_entries, stats.memory_bytes) == (1, 1, len(b"version 1"))
    await cache.delete(FP, xs=range(1, 2), ys=range(1, 2))
    assert await cache.get(other) is None


async def test_memory_bound_of_the_cache(tmp_path, executor, clock):
    cache = TileCache(tmp_path, executor=executor, clock=clock, memory_bytes=50_000)
    for x in range(20):
        key = CacheKey(FP, "tile", 10, x, 0)
        await cache.get_or_fetch(key, Upstream(Fresh(b"p" * 5000, "image/png")), ttl=60)
        assert cache.memory.bytes <= 50_000
    assert len(cache.memory) < 20


def test_keys_are_validated_and_their_path_built_once():
    assert KEY.id == f"ab/{FP}/tile/5/10/12"
    assert CacheKey(FP, "rendered:png@2x", 1, 0, 1).id.endswith("/rendered:png@2x/1/0/1")
    for bad in ("../x", ".locks", "a/b", ""):
        with pytest.raises(ValueError):
            CacheKey(FP, bad, 0, 0, 0)
    with pytest.raises(ValueError):
        CacheKey("NOT-HEX", "tile", 0, 0, 0)
    with pytest.raises(ValueError):
        CacheKey(FP, "tile", 0, -1, 0)


def test_entry_helper_uses_the_cache_clock(tmp_path, clock):
    cache = TileCache(tmp_path, clock=clock)
    entry = cache.entry(b"x", "image/png", 60)
    assert isinstance(entry, CacheEntry) and entry.stored_at == clock.now
