"""The catalog backends every catalog test runs on: the SQLite file, and PostgreSQL.

Each PostgreSQL test gets a database of its own (``imagery_test_<random>``), dropped at
its end, so runs never see each other. Where PostgreSQL does not answer, those tests
skip and say why; ``IMAGERY_PROXY_TEST_POSTGRES`` names another server's admin URL.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg
import attrs
import pytest

from proxy.catalog.base import Catalog
from proxy.catalog.open import open_catalog_at
from proxy.catalog.postgres import PostgresDatabase
from proxy.catalog.postgres_cells import PostgresCellStore
from proxy.catalog.postgres_jobs import PostgresJobStore
from proxy.catalog.sqlite import SQLiteDatabase
from proxy.catalog.sqlite_cells import SQLiteCellStore
from proxy.catalog.sqlite_jobs import SQLiteJobStore
from proxy.quota.store import QuotaStore

ADMIN_URL = os.environ.get(
    "IMAGERY_PROXY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def create_database() -> str:
    """A new empty database; its URL. Skips the test when PostgreSQL does not answer."""
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc})")
    name = f"imagery_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    """Drop the database made by :func:`create_database` (connections left are cut)."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def terminate_connections(url: str) -> None:
    """Cut every connection to the database at ``url``, as a restart of PostgreSQL would."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        cut = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
        assert cut > 0, "no connection to cut: the test would prove nothing"
    finally:
        await admin.close()


@attrs.frozen
class Backend:
    """One catalog backend under test: ``url`` is the ``catalog_url`` setting."""

    name: str
    url: str
    sqlite_path: Path

    async def open(self) -> Catalog:
        """The catalog (a new one per call: another connection, as another process has)."""
        catalog, quota = await self.open_with_quota()
        await quota.close()
        return catalog

    async def open_with_quota(self) -> tuple[Catalog, QuotaStore]:
        """The catalog and its quota store, as ``serve`` opens them."""
        return await open_catalog_at(self.url, self.sqlite_path)

    def with_clock(self, catalog: Catalog, clock: object) -> Catalog:
        """``catalog`` whose job and cell stores read time from ``clock``."""
        database = catalog.database
        if isinstance(database, SQLiteDatabase):
            jobs, cells = SQLiteJobStore(database, clock), SQLiteCellStore(database, clock)  # type: ignore[arg-type]
            return attrs.evolve(catalog, jobs=jobs, cells=cells)
        assert isinstance(database, PostgresDatabase)
        pg_jobs, pg_cells = PostgresJobStore(database, clock), PostgresCellStore(database, clock)  # type: ignore[arg-type]
        return attrs.evolve(catalog, jobs=pg_jobs, cells=pg_cells)
