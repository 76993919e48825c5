"""The SQLite catalog: server storage, and schema migrations from every earlier schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proxy.catalog.migrations import MIGRATIONS, CatalogTooNew, migrate
from proxy.catalog.sqlite import open_catalog

LATEST = len(MIGRATIONS)
TABLES = {
    "alembic_version",
    "servers",
    "servers_by_age",
    "images",
    "images_by_age",
    "quota_usage",
    "jobs",
    "jobs_by_age",
    "jobs_by_state",
    "cells",
    "cells_by_state",
}

# The first release's schema and row, verbatim: its files never set user_version.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
OLD_ROW = (
    "abc123",
    '{"type": "xyz", "name": "Old"}',
    "2024-01-01T00:00:00.000+00:00",
    "2024-01-02",
)


def schema_of(path: Path) -> tuple[int, set[str]]:
    """The file's ``user_version`` and the names of its tables and indexes."""
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE sql IS NOT NULL")}
    db.close()
    return version, names


async def test_servers_are_stored_listed_oldest_first_updated_and_deleted(backend):
    catalog = await backend.open()
    try:
        a = await catalog.servers.create({"name": "a", "headers": {"k": "secret"}})
        b = await catalog.servers.create({"name": "b"})
        assert await catalog.servers.get(a.id) == a  # secrets included: the catalog keeps them
        assert [r.id for r in await catalog.servers.all()] == [a.id, b.id]

        updated = await catalog.servers.update(a.id, {"name": "a2"})
        assert updated is not None and updated.config == {"name": "a2"}
        assert updated.created_at == a.created_at and updated.updated_at >= a.updated_at
        assert await catalog.servers.update("nope", {}) is None

        assert await catalog.servers.delete(a.id) is True
        assert await catalog.servers.delete(a.id) is False
        assert await catalog.servers.get(a.id) is None
        await catalog.ping()
    finally:
        await catalog.close()


async def test_a_new_file_gets_the_latest_schema_and_reopening_changes_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    for _ in range(2):  # the second open finds nothing to do (step 2 is not re-runnable)
        await (await open_catalog(path)).close()
        assert schema_of(path) == (LATEST, TABLES)


async def test_a_first_release_file_is_migrated_and_keeps_its_servers(tmp_path):
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute("INSERT INTO servers VALUES (?, ?, ?, ?)", OLD_ROW)
    db.close()
    assert schema_of(path) == (0, {"servers"})

    catalog = await open_catalog(path)
    try:
        record = await catalog.servers.get("abc123")
        assert record is not None
        assert (record.config, record.created_at, record.updated_at) == (
            {"type": "xyz", "name": "Old"},
            OLD_ROW[2],
            OLD_ROW[3],
        )
        assert [r.id for r in await catalog.servers.all()] == ["abc123"]
    finally:
        await catalog.close()
    assert schema_of(path) == (LATEST, TABLES)


async def test_a_file_from_a_newer_release_is_refused_untouched(tmp_path):
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    with pytest.raises(CatalogTooNew, match=f"version {LATEST + 1}"):
        await open_catalog(path)
    assert schema_of(path) == (LATEST + 1, {"servers"})


def test_a_failing_step_rolls_back_every_step(tmp_path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        broken = (*MIGRATIONS, ("CREATE TABLE later (a)", "NOT SQL"))
        with pytest.raises(sqlite3.OperationalError):
            migrate(db, broken)
        assert not db.in_transaction
    finally:
        db.close()
    assert schema_of(path) == (0, set())  # not even steps 1 and 2 stayed
