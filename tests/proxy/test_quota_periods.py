"""Quota period maths, the counters' store (exact across connections) and its migration step."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import attrs
import pytest

from proxy.catalog.migrations import MIGRATIONS
from proxy.catalog.sqlite import open_catalog
from proxy.quota.model import QuotaConfig
from proxy.quota.periods import BUCKETS, SlotUsage, frees_at, slot_end, window
from proxy.quota.store import Limits, SQLiteQuotaStore


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def quota(**fields) -> QuotaConfig:
    return QuotaConfig(**{"requests": 10, "period": "day", **fields})


def test_a_day_is_the_utc_day_and_resets_at_midnight():
    w = window(quota(), ts(2026, 11, 29, 23, 59, 59))
    assert w.kind == "day" and w.first == w.slot
    assert w.resets_at == ts(2026, 11, 30)
    assert window(quota(), ts(2026, 11, 30)).slot == w.slot + 1


def test_a_month_is_the_utc_month_across_the_year_end():
    december = window(quota(period="month"), ts(2026, 12, 31, 23, 0))
    assert december.resets_at == ts(2027, 1, 1)
    january = window(quota(period="month"), ts(2027, 1, 1))
    assert january.slot == december.slot + 1 and january.resets_at == ts(2027, 2, 1)
    assert window(quota(period="month"), ts(2028, 2, 10)).resets_at == ts(2028, 3, 1)  # leap


def test_a_rolling_window_sums_61_buckets_so_a_request_counts_at_least_the_window():
    q = quota(period="rolling", window_seconds=60)  # 1 s buckets
    w = window(q, 1000.5)
    assert w.kind == "rolling:60" and w.slot == 1000 and w.first == 1000 - BUCKETS
    # a request made at 1000.5 counts until bucket 1061 begins: 60.5 s later, not less
    assert slot_end(q, 1000) == 1061.0
    assert window(q, 1060.99).first <= 1000 < window(q, 1061.0).first


def test_a_spent_rolling_window_frees_when_enough_old_buckets_leave():
    q = quota(period="rolling", window_seconds=60, requests=3)
    w = window(q, 1030.0)
    slots = [SlotUsage(1000, 1, 0), SlotUsage(1010, 1, 0), SlotUsage(1030, 1, 0)]
    assert frees_at(q, w, slots) == 1061.0  # the oldest request leaves: 2 < 3
    q_bytes = quota(period="rolling", window_seconds=60, requests=None, bytes=100)
    heavy = [SlotUsage(1000, 1, 10), SlotUsage(1010, 1, 200)]
    assert frees_at(q_bytes, window(q_bytes, 1020.0), heavy) == 1071.0  # both must leave
    day = quota()
    assert frees_at(day, window(day, 1000.0), slots) == 86_400.0


def test_quota_config_rules():
    with pytest.raises(ValueError):
        QuotaConfig(period="day")  # neither requests nor bytes
    with pytest.raises(ValueError):
        QuotaConfig(requests=1, period="rolling")  # no window
    with pytest.raises(ValueError):
        QuotaConfig(requests=1, period="day", window_seconds=60)
    assert "5 requests and 9 bytes per UTC month" == (
        QuotaConfig(requests=5, bytes=9, period="month").describe()
    )


async def test_two_connections_admitting_at_once_admit_exactly_the_limit(backend):
    opened = [await backend.open_with_quota() for _ in range(2)]  # two replicas' stores
    stores = [store for _, store in opened]
    try:
        w = window(quota(), ts(2026, 11, 29, 12))
        limits = Limits(requests=37, bytes=None)
        results = await asyncio.gather(*(stores[i % 2].admit("s1", w, limits) for i in range(100)))
        assert sum(r.admitted for r in results) == 37
        assert sorted(r.requests for r in results if r.admitted) == list(range(1, 38))
        assert [s.requests for s in await stores[0].usage("s1", w)] == [37]
        # the reserve admits past the limit, once per reserved request
        reserved = [await stores[1].admit("s1", w, Limits(37, None, reserve=2)) for _ in range(3)]
        assert [r.admitted for r in reserved] == [True, True, False]
        assert reserved[0].from_reserve
        assert await stores[0].add_bytes("s1", w, 500) == (39, 500)
    finally:
        for catalog, store in opened:
            await store.close()
            await catalog.close()


async def test_old_rolling_buckets_are_dropped(backend):
    catalog, store = await backend.open_with_quota()
    try:
        q = quota(period="rolling", window_seconds=60)
        for now in (1000.0, 1001.0, 1100.0):
            assert (await store.admit("s", window(q, now), Limits(10, None))).admitted
        assert [s.slot for s in await store.usage("s", window(q, 1100.0))] == [1100]
        # the dropped slots are gone from the table, not only out of the window
        every = attrs.evolve(window(q, 1100.0), first=0)
        assert [s.slot for s in await store.usage("s", every)] == [1100]
        await store.forget("s")
        assert await store.usage("s", every) == []
    finally:
        await store.close()
        await catalog.close()


async def test_the_counters_step_applies_to_a_file_of_the_step_before(tmp_path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    step = next(i for i, s in enumerate(MIGRATIONS) if "quota_usage" in s[0])
    for earlier in MIGRATIONS[:step]:
        for statement in earlier:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {step}")
    db.execute("INSERT INTO servers VALUES ('abc', '{}', '2024', '2024')")
    db.close()
    catalog = await open_catalog(path)
    store = await SQLiteQuotaStore(path).open()
    try:
        assert await catalog.servers.get("abc") is not None
        assert (await store.admit("abc", window(quota(), 0.0), Limits(1, None))).admitted
    finally:
        await store.close()
        await catalog.close()
