"""The catalog's one schema, for SQLite and PostgreSQL alike (SQLAlchemy Core).

Types are chosen so an existing SQLite catalog (made by ``proxy.catalog.migrations``)
already *is* this schema: JSON documents are TEXT (written by orjson, read back the
same way by both backends), times people read are ISO 8601 TEXT, lease and pause times
are Unix seconds (double precision), counters of bytes are 64-bit on PostgreSQL.

The Alembic revisions (``proxy/catalog/alembic/versions``) make these tables; a test
compares the migrated databases with this module, so the two never drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

# 64-bit on PostgreSQL (a cell or a day of quota passes 2 GiB); SQLite's INTEGER already is.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Unix seconds and metres: double precision (SQLite spells it REAL).
Real: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")

metadata = sa.MetaData()

servers = sa.Table(
    "servers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Index("servers_by_age", "created_at"),
)

# No foreign key to servers: an image outlives its server's deletion (410 server_deleted).
images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("server_id", sa.Text, nullable=False),
    sa.Column("server_updated_at", sa.Text, nullable=False),
    sa.Column("crs", sa.Text, nullable=False),
    sa.Column("transform", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("resolution_m", Real, nullable=False),
    sa.Column("aois", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Index("images_by_age", "created_at"),
)

# One row per server, period kind and slot (proxy/quota/store.py).
quota_usage = sa.Table(
    "quota_usage",
    metadata,
    sa.Column("server_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes", BigInt, nullable=False, server_default="0"),
    sa.Column("reserve_used", sa.Integer, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("server_id", sa.Text, nullable=False),
    sa.Column("image_id", sa.Text),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("paused_until", Real),
    sa.Column("paused_reason", sa.Text),
    sa.Column("paused_message", sa.Text),
    sa.Column("outputs", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("finisher", sa.Text),
    sa.Column("finisher_until", Real),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("started_at", sa.Text),
    sa.Column("finished_at", sa.Text),
    sa.Index("jobs_by_age", "created_at"),
    sa.Index("jobs_by_state", "state"),
)

cells = sa.Table(
    "cells",
    metadata,
    sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("polygon", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("lease_until", Real),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("bytes", BigInt, nullable=False, server_default="0"),
    sa.Column("upstream_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished_at", sa.Text),
    sa.Index("cells_by_state", "state", "job_id"),
)
