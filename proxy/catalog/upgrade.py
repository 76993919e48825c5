"""Bring a catalog database (SQLite or PostgreSQL) to the newest schema with Alembic.

Every upgrade runs in one transaction that first takes a migration lock, so processes
starting together apply each revision once: SQLite's ``BEGIN IMMEDIATE`` (the write
lock, before anything is read), PostgreSQL's transaction-scoped advisory lock.

A SQLite catalog from a release before Alembic carries its schema version in ``PRAGMA
user_version`` (``proxy.catalog.migrations``): it is first brought to that history's
last step, then stamped with the baseline revision it equals, then upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.catalog.migrations import MIGRATIONS, CatalogTooNew

log = logging.getLogger(__name__)
# Alembic tells of its context at INFO on every start; our own line says what changed.
ALEMBIC_LOG = logging.getLogger("alembic")
SCRIPTS = Path(__file__).parent / "alembic"
BASELINE = "0001"  # equals the last PRAGMA user_version step
LEGACY_VERSION = len(MIGRATIONS)
# Any fixed 64-bit key: every imagery-proxy process migrating one PostgreSQL takes it.
PG_MIGRATION_LOCK = 0x1A6E_7279_5052_4F58


def alembic_config(connection: sa.Connection) -> Config:
    """Alembic's settings, in code: the revisions shipped in this package, on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this release knows."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (``None``: never stamped)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: sa.Connection) -> str:
    """Upgrade the database behind ``connection`` (inside its locked transaction) to head."""
    level = ALEMBIC_LOG.level
    ALEMBIC_LOG.setLevel(logging.WARNING)
    try:
        before = current_revision(connection)
        after = _upgrade(connection)
    finally:
        ALEMBIC_LOG.setLevel(level)
    if after != before:
        name = connection.dialect.name
        log.info("catalog (%s) schema: %s -> revision %s", name, before or "unstamped", after)
    return after


def _upgrade(connection: sa.Connection) -> str:
    config = alembic_config(connection)
    known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
    current = current_revision(connection)
    if current is not None and current not in known:
        raise CatalogTooNew(
            f"the catalog is at schema revision {current}, which this release does not "
            "know: upgrade imagery-proxy"
        )
    if current is None and connection.dialect.name == "sqlite":
        _adopt_legacy_sqlite(connection, config)
    command.upgrade(config, "head")
    if connection.dialect.name == "sqlite":
        # Releases before Alembic read this: they refuse nothing they know.
        connection.exec_driver_sql(f"PRAGMA user_version = {LEGACY_VERSION}")
    return head()


def _adopt_legacy_sqlite(connection: sa.Connection, config: Config) -> None:
    """Bring a pre-Alembic SQLite catalog to the baseline, and stamp it so."""
    version = int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
    if version > LEGACY_VERSION:
        raise CatalogTooNew(
            f"the catalog is at schema version {version}; this release knows up to "
            f"{LEGACY_VERSION}: upgrade imagery-proxy"
        )
    # The first release made ``servers`` without ever setting user_version.
    if version == 0 and not sa.inspect(connection).has_table("servers"):
        return  # a new file: the revisions make everything
    for step in MIGRATIONS[version:]:
        for statement in step:
            connection.exec_driver_sql(statement)
    command.stamp(config, BASELINE)


SQLITE_LOCK_WAIT = 60.0  # seconds to wait for another starting process's migration


def upgrade_sqlite(path: Path) -> str:
    """Upgrade the SQLite catalog file at ``path`` (blocking: run it off the event loop)."""
    engine = sa.create_engine(
        f"sqlite:///{path}", poolclass=sa.NullPool, connect_args={"timeout": SQLITE_LOCK_WAIT}
    )

    @sa.event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @sa.event.listens_for(engine, "begin")
    def _take_the_write_lock(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            return upgrade(connection)
    finally:
        engine.dispose()


async def upgrade_postgresql(engine: AsyncEngine) -> str:
    """Upgrade the PostgreSQL catalog behind ``engine`` under the migration lock."""
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
        )
        return await connection.run_sync(upgrade)
