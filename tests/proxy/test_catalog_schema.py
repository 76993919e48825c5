"""The catalog's one schema and its Alembic history, on SQLite and PostgreSQL.

A SQLite catalog of the release before Alembic (``PRAGMA user_version`` 5) opens with
its rows intact and is stamped, then upgraded to head; every migrated database equals
``proxy/catalog/schema.py``; a database from a newer release is refused.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from proxy.catalog.migrations import MIGRATIONS, CatalogTooNew, migrate
from proxy.catalog.postgres import async_url, open_postgres_catalog
from proxy.catalog.schema import metadata
from proxy.catalog.sqlite import SQLiteDatabase, open_catalog
from proxy.catalog.upgrade import current_revision, head
from proxy.config import load_settings
from proxy.errors import StartupError
from proxy.quota.periods import window
from proxy.quota.store import Limits
from tests.proxy.catalog_backends import Backend
from tests.proxy.test_quota_periods import quota

CONFIG = '{"type": "xyz", "name": "Old", "headers": {"k": "secret"}}'
TRANSFORM = "[10.0, 0.0, 667916.0, 0.0, -10.0, 5635549.0]"
SQUARE = '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}'


def current_release_file(path: Path) -> None:
    """A catalog as the release before Alembic left it: every step, and rows in each table."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(db)
        db.execute("INSERT INTO servers VALUES ('srv1', ?, '2024-01-01', '2024-01-02')", (CONFIG,))
        db.execute(
            "INSERT INTO images VALUES ('img1', 'Old image', 'srv1', '2024-01-02', 'EPSG:3857', "
            '?, 1113, 1570, 7.07, \'{"type": "FeatureCollection", "features": []}\', '
            "'2024-01-03')",
            (TRANSFORM,),
        )
        db.execute(
            "INSERT INTO jobs (id, kind, name, server_id, params, state, created_at, updated_at) "
            "VALUES ('job1', 'materialize', 'Old job', 'srv1', '{\"p\": 1}', 'running', "
            "'2024-01-04', '2024-01-04')"
        )
        db.execute(
            "INSERT INTO cells (job_id, idx, spec, polygon, state, attempt, bytes, output) "
            "VALUES ('job1', 0, '{}', ?, 'done', 1, 5000000000, 'cells/0.tif')",
            (SQUARE,),
        )
        db.execute(
            "INSERT INTO cells (job_id, idx, spec, polygon, state) "
            "VALUES ('job1', 1, '{}', ?, 'pending')",
            (SQUARE,),
        )
        db.execute("INSERT INTO quota_usage VALUES ('srv1', 'day', 20000, 7, 900, 0)")
    finally:
        db.close()


def legacy_differences(connection: sa.Connection) -> list[object]:
    """How an upgraded pre-Alembic SQLite file differs from schema.py, but for two quirks.

    ``id TEXT PRIMARY KEY`` without ``NOT NULL`` reflects as nullable (SQLite would take a
    NULL id; no store writes one), and SQLAlchemy does not read the ``ON DELETE CASCADE``
    of the legacy inline ``REFERENCES`` (SQLite's own list, checked here, has it).
    """
    cascade = connection.exec_driver_sql("PRAGMA foreign_key_list(cells)").all()
    assert [(row[2], row[3], row[6]) for row in cascade] == [("jobs", "job_id", "CASCADE")]
    diff = compare_metadata(MigrationContext.configure(connection), metadata)
    quirks = []
    for change in diff:
        kind = change[0] if isinstance(change, tuple) else change[0][0]
        if kind in ("remove_fk", "add_fk"):
            quirks.append(change)
        elif kind == "modify_nullable" and change[0][3] == "id":
            quirks.append(change)
    assert len(quirks) == 5  # the FK (removed, added) and the ids of three tables
    return [change for change in diff if change not in quirks]


async def test_a_current_release_file_opens_with_its_rows_intact_at_alembic_head(tmp_path):
    path = tmp_path / "catalog.sqlite"
    current_release_file(path)
    catalog = await open_catalog(path)
    try:
        server = await catalog.servers.get("srv1")
        assert server is not None and server.config["headers"] == {"k": "secret"}
        image = await catalog.images.get("img1")
        assert image is not None and image.transform == (10.0, 0.0, 667916.0, 0.0, -10.0, 5635549.0)
        job = await catalog.jobs.get("job1")
        assert job is not None and job.state == "running" and job.params == {"p": 1}
        assert (job.cells.done, job.cells.pending, job.bytes_written) == (1, 1, 5_000_000_000)
        claim = await catalog.cells.claim("me", 30.0)  # the old job goes on where it was
        assert claim is not None and (claim.job_id, claim.index, claim.attempt) == ("job1", 1, 1)
    finally:
        await catalog.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert current_revision(connection) == head()
        assert connection.exec_driver_sql("PRAGMA user_version").scalar() == len(MIGRATIONS)
        assert legacy_differences(connection) == []
        usage = connection.exec_driver_sql("SELECT * FROM quota_usage").all()
        assert usage == [("srv1", "day", 20000, 7, 900, 0)]
    engine.dispose()


async def test_every_migrated_database_equals_schema_py(backend: Backend):
    await (await backend.open()).close()
    if backend.name == "sqlite":
        engine = sa.create_engine(f"sqlite:///{backend.sqlite_path}")
        with engine.connect() as connection:
            assert current_revision(connection) == head()
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        engine.dispose()
        return
    async_engine = create_async_engine(async_url(backend.url))

    def compare(connection: sa.Connection) -> tuple[str | None, list[object]]:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
        return current_revision(connection), diff

    async with async_engine.connect() as connection:
        assert await connection.run_sync(compare) == (head(), [])
    await async_engine.dispose()


async def test_a_database_of_a_newer_release_is_refused(backend: Backend):
    await (await backend.open()).close()
    statement = "UPDATE alembic_version SET version_num = 'fffffff'"
    if backend.name == "sqlite":
        with sqlite3.connect(backend.sqlite_path) as db:
            db.execute(statement)
        db.close()
        with pytest.raises(CatalogTooNew, match="fffffff"):
            await backend.open()
        return
    engine = create_async_engine(async_url(backend.url))
    async with engine.begin() as connection:
        await connection.execute(sa.text(statement))
    await engine.dispose()
    with pytest.raises(CatalogTooNew, match="fffffff"):
        await backend.open()


async def test_replicas_starting_together_on_a_new_database_migrate_it_once(backend: Backend):
    catalogs = await asyncio.gather(*(backend.open() for _ in range(3)))
    try:
        server = await catalogs[0].servers.create({"name": "shared"})
        assert [await c.servers.get(server.id) for c in catalogs] == [server] * 3
    finally:
        for catalog in catalogs:
            await catalog.close()


async def test_big_byte_counts_fit_both_backends(backend: Backend):
    catalog, store = await backend.open_with_quota()
    try:
        w = window(quota(), 0.0)
        assert (await store.admit("s1", w, Limits(None, None))).admitted
        assert await store.add_bytes("s1", w, 3 * 2**31) == (1, 3 * 2**31)
    finally:
        await store.close()
        await catalog.close()


async def test_an_unreachable_postgresql_stops_the_start_in_one_line_without_its_password():
    url = "postgresql://user:hunter2@127.0.0.1:1/catalog"
    with pytest.raises(StartupError) as caught:
        await open_postgres_catalog(url)
    message = str(caught.value)
    assert "hunter2" not in message and "127.0.0.1:1" in message and "\n" not in message


def test_catalog_url_takes_only_postgresql_urls(tmp_path):
    assert load_settings(env={}, data_dir=tmp_path).catalog_url == ""
    url = "postgresql://u@127.0.0.1:5432/db"
    assert load_settings(env={"IMAGERY_PROXY_CATALOG_URL": url}).catalog_url == url
    with pytest.raises(ValueError, match="catalog_url"):
        load_settings(env={}, catalog_url="mysql://u@h/db")


async def test_sqlite_files_opened_three_at_once_never_answer_locked(tmp_path):
    # SQLite refused the WAL switch at once ("database is locked", no busy wait) to about
    # one open in 20 while others opened the same new file: retried now.
    for round_ in range(40):
        path = tmp_path / f"c{round_}.sqlite"
        opened = await asyncio.gather(*(SQLiteDatabase(path).open() for _ in range(3)))
        for database in opened:
            await database.close()
