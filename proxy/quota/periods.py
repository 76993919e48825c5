"""Period maths: which counting slots a quota sums now, and when a spent quota frees up.

Usage is kept in slots (rows of ``quota_usage``), one counter pair per slot:

- ``day``: slot = days since 1970-01-01 UTC; the period is that one slot.
- ``month``: slot = ``year * 12 + month - 1`` (UTC); the period is that one slot.
- ``rolling``: slot = a bucket of ``window / BUCKETS`` seconds; the window sums the
  current bucket and the :data:`BUCKETS` before it. A request therefore counts for at
  least ``window`` and at most ``window + window / BUCKETS`` seconds: the quota is never
  exceeded over any span of ``window`` seconds, and admission sums at most 61 rows
  (constant work, whatever the limit). A log of one timestamp per request would be exact
  to the second, but admission would count up to ``limit`` rows each time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from proxy.quota.model import QuotaConfig

BUCKETS = 60
DAY = 86_400


@attrs.frozen
class Window:
    """The slots a quota sums at one instant."""

    kind: str  # "day", "month" or "rolling:<window seconds>": the rows' key
    slot: int  # where a request admitted now is counted
    first: int  # the oldest slot summed (== slot for calendar periods)
    resets_at: float  # calendar: the period's end; rolling: when the current bucket leaves


@attrs.frozen
class SlotUsage:
    """One slot's counters."""

    slot: int
    requests: int
    bytes: int


def window(quota: QuotaConfig, now: float) -> Window:
    """The slots ``quota`` sums at Unix time ``now``."""
    if quota.period == "day":
        day = math.floor(now / DAY)
        return Window("day", day, day, float((day + 1) * DAY))
    if quota.period == "month":
        when = datetime.fromtimestamp(now, UTC)
        month = when.year * 12 + when.month - 1
        return Window("month", month, month, month_start(month + 1))
    seconds = quota.window_seconds or 1
    width = seconds / BUCKETS
    bucket = math.floor(now / width)
    return Window(f"rolling:{seconds}", bucket, bucket - BUCKETS, (bucket + BUCKETS + 1) * width)


def month_start(month: int) -> float:
    """Unix time of the first instant of ``month`` (``year * 12 + month - 1``), UTC."""
    year, index = divmod(month, 12)
    return datetime(year, index + 1, 1, tzinfo=UTC).timestamp()


def slot_end(quota: QuotaConfig, slot: int) -> float:
    """When usage counted in ``slot`` stops counting."""
    if quota.period == "day":
        return float((slot + 1) * DAY)
    if quota.period == "month":
        return month_start(slot + 1)
    width = (quota.window_seconds or 1) / BUCKETS
    return (slot + BUCKETS + 1) * width


def frees_at(
    quota: QuotaConfig, now_window: Window, slots: Sequence[SlotUsage], reserve: int = 0
) -> float:
    """When a spent quota admits a request again.

    Calendar periods: the period's end. Rolling: the end of the oldest slots whose
    expiry brings both counters under their limits (``reserve`` raises the request
    limit, for test connection).
    """
    if not now_window.kind.startswith("rolling"):
        return now_window.resets_at
    requests = sum(s.requests for s in slots)
    size = sum(s.bytes for s in slots)
    max_requests = None if quota.requests is None else quota.requests + reserve
    for usage in sorted(slots, key=lambda s: s.slot):
        requests -= usage.requests
        size -= usage.bytes
        if _under(requests, max_requests) and _under(size, quota.bytes):
            return slot_end(quota, usage.slot)
    return now_window.resets_at


def _under(used: int, limit: int | None) -> bool:
    return limit is None or used < limit
