"""Quota counters in the PostgreSQL catalog, shared by every replica.

A window's limit applies to the *sum* of its slots (a rolling window has many), so no
single conditional ``UPDATE`` can admit atomically. An admission takes a transaction-
scoped advisory lock on its (server, period kind) first, then reads the window and adds
one with ``INSERT ... ON CONFLICT DO UPDATE``: two replicas never both admit the last
request of a quota, and admissions of other servers never wait on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.catalog.schema import quota_usage
from proxy.quota.periods import SlotUsage, Window
from proxy.quota.store import NO_LIMIT, Admission, Limits

if TYPE_CHECKING:
    from proxy.catalog.postgres import PostgresDatabase

LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class PostgresQuotaStore:
    """Counters in ``quota_usage``, over the catalog's connection pool."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database

    async def open(self) -> PostgresQuotaStore:
        """Nothing to open: the catalog's pool serves the counters too."""
        return self

    async def close(self) -> None:
        """Nothing to close: the catalog closes its pool."""

    async def admit(self, server_id: str, window: Window, limits: Limits) -> Admission:
        """Count one request in ``window`` if ``limits`` allow it; atomic across replicas."""
        async with self.database.transaction() as db:
            await db.execute(LOCK, {"key": f"quota/{server_id}/{window.kind}"})
            requests, size, reserve_used, newest = await _totals(db, server_id, window)
            max_requests = NO_LIMIT if limits.requests is None else limits.requests
            max_bytes = NO_LIMIT if limits.bytes is None else limits.bytes
            under = requests < max_requests and size < max_bytes
            from_reserve = not under and reserve_used < limits.reserve
            if not (under or from_reserve):
                return Admission(False, requests, size)
            add = insert(quota_usage).values(
                server_id=server_id,
                kind=window.kind,
                slot=window.slot,
                requests=1,
                bytes=0,
                reserve_used=int(from_reserve),
            )
            await db.execute(
                add.on_conflict_do_update(
                    index_elements=[
                        quota_usage.c.server_id,
                        quota_usage.c.kind,
                        quota_usage.c.slot,
                    ],
                    set_={
                        "requests": quota_usage.c.requests + 1,
                        "reserve_used": quota_usage.c.reserve_used + add.excluded.reserve_used,
                    },
                )
            )
            if newest != window.slot and window.first != window.slot:
                # A new rolling bucket: drop the ones that left the window (bounded table).
                await db.execute(
                    quota_usage.delete().where(
                        *_of(server_id, window.kind), quota_usage.c.slot < window.first
                    )
                )
            return Admission(True, requests + 1, size, from_reserve)

    async def add_bytes(self, server_id: str, window: Window, size: int) -> tuple[int, int]:
        """Add ``size`` bytes to ``window``'s current slot; the window's totals after it."""
        async with self.database.transaction() as db:
            await db.execute(
                quota_usage.update()
                .where(*_of(server_id, window.kind), quota_usage.c.slot == window.slot)
                .values(bytes=quota_usage.c.bytes + size)
            )
            totals = await _totals(db, server_id, window)
        return totals[0], totals[1]

    async def usage(self, server_id: str, window: Window) -> list[SlotUsage]:
        """The slots ``window`` sums, oldest first (absent slots: nothing used)."""
        query = (
            sa.select(quota_usage.c.slot, quota_usage.c.requests, quota_usage.c.bytes)
            .where(
                *_of(server_id, window.kind), quota_usage.c.slot.between(window.first, window.slot)
            )
            .order_by(quota_usage.c.slot)
        )
        async with self.database.transaction() as db:
            return [SlotUsage(int(s), int(r), int(b)) for s, r, b in await db.execute(query)]

    async def forget(self, server_id: str) -> None:
        """Drop a deleted server's counters."""
        async with self.database.transaction() as db:
            await db.execute(quota_usage.delete().where(quota_usage.c.server_id == server_id))


def _of(server_id: str, kind: str) -> tuple[sa.ColumnElement[bool], ...]:
    return quota_usage.c.server_id == server_id, quota_usage.c.kind == kind


def _in(server_id: str, window: Window) -> tuple[sa.ColumnElement[bool], ...]:
    return *_of(server_id, window.kind), quota_usage.c.slot.between(window.first, window.slot)


async def _totals(db: AsyncConnection, server_id: str, window: Window) -> tuple[int, int, int, int]:
    """(requests, bytes, reserve used, newest slot or -1) summed over ``window``."""
    query = sa.select(
        sa.func.coalesce(sa.func.sum(quota_usage.c.requests), 0),
        sa.func.coalesce(sa.func.sum(quota_usage.c.bytes), 0),
        sa.func.coalesce(sa.func.sum(quota_usage.c.reserve_used), 0),
        sa.func.coalesce(sa.func.max(quota_usage.c.slot), -1),
    ).where(*_in(server_id, window))
    row = (await db.execute(query)).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])
