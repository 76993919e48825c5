"""The SQLite catalog's schema history, applied at start under ``PRAGMA user_version``.

``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``. Never edit a released
step: append a new one. Version 0 is a new file, or the first release's file (its
``servers`` table was made without ever setting ``user_version``), hence the
``IF NOT EXISTS`` in step 1.
"""

from __future__ import annotations

import sqlite3

from proxy.errors import StartupError

Migration = tuple[str, ...]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: servers, as the first release made them
    (
        """CREATE TABLE IF NOT EXISTS servers (
            id TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ),
    # 2: the list order (oldest first; rowid, which every index entry carries, breaks
    # ties in one millisecond) without sorting the whole table
    ("CREATE INDEX servers_by_age ON servers (created_at)",),
    # 3: streaming images. No foreign key to servers: an image outlives its server's
    # deletion, and answers 410 server_deleted instead of vanishing.
    (
        """CREATE TABLE images (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            server_id TEXT NOT NULL,
            server_updated_at TEXT NOT NULL,
            crs TEXT NOT NULL,
            transform TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            resolution_m REAL NOT NULL,
            aois TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX images_by_age ON images (created_at)",
    ),
    # 4: upstream quota counters (proxy/quota/store.py): one row per server, period kind
    # and slot (a UTC day, a UTC month or a rolling window's bucket). No foreign key: the
    # quota store has a connection of its own; a deleted server's rows are dropped by it.
    (
        """CREATE TABLE quota_usage (
            server_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            slot INTEGER NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            reserve_used INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (server_id, kind, slot)
        ) WITHOUT ROWID""",
    ),
    # 5: jobs and their cells (SPEC §6). Times people read are ISO text; lease and pause
    # times are Unix seconds (REAL), compared in every claim.
    (
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            server_id TEXT NOT NULL,
            image_id TEXT,
            params TEXT NOT NULL,
            state TEXT NOT NULL,
            paused_until REAL,
            paused_reason TEXT,
            paused_message TEXT,
            outputs TEXT,
            error TEXT,
            finisher TEXT,
            finisher_until REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        )""",
        "CREATE INDEX jobs_by_age ON jobs (created_at)",
        "CREATE INDEX jobs_by_state ON jobs (state)",
        """CREATE TABLE cells (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            spec TEXT NOT NULL,
            polygon TEXT NOT NULL,
            state TEXT NOT NULL,
            owner TEXT,
            lease_until REAL,
            attempt INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            output TEXT,
            bytes INTEGER NOT NULL DEFAULT 0,
            upstream_requests INTEGER NOT NULL DEFAULT 0,
            finished_at TEXT,
            PRIMARY KEY (job_id, idx)
        )""",
        "CREATE INDEX cells_by_state ON cells (state, job_id)",
    ),
)


class CatalogTooNew(StartupError):
    """The file was written by a newer release, whose schema this one does not know."""


def migrate(db: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring ``db`` to the latest version in one transaction; return that version.

    ``BEGIN IMMEDIATE`` takes the write lock before the version is read, so two processes
    starting together (``serve`` and a CLI command) apply each step once. A failing step
    rolls every step back: the file stays at the version it had.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise CatalogTooNew(
                f"the catalog is at schema version {version}; this release knows up to "
                f"{len(migrations)}: upgrade imagery-proxy"
            )
        for step in migrations[version:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(migrations)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(migrations)
