"""The baseline: the schema of SQLite catalog version 5 (``proxy.catalog.migrations``).

A new database (SQLite or PostgreSQL) gets every table here; an existing SQLite file at
``PRAGMA user_version`` 5 already has them and is stamped with this revision instead.
Frozen: a later change of the schema is a new revision, never an edit of this one.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Unix seconds and metres: double precision (SQLite spells it REAL).
Real: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")


def upgrade() -> None:
    """Create servers, images, quota_usage, jobs and cells with their indexes."""
    op.create_table(
        "servers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_index("servers_by_age", "servers", ["created_at"])
    op.create_table(
        "images",
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
    )
    op.create_index("images_by_age", "images", ["created_at"])
    op.create_table(
        "quota_usage",
        sa.Column("server_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bytes", BigInt, nullable=False, server_default="0"),
        sa.Column("reserve_used", sa.Integer, nullable=False, server_default="0"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "jobs",
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
    )
    op.create_index("jobs_by_age", "jobs", ["created_at"])
    op.create_index("jobs_by_state", "jobs", ["state"])
    op.create_table(
        "cells",
        sa.Column(
            "job_id", sa.Text, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
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
    )
    op.create_index("cells_by_state", "cells", ["state", "job_id"])


def downgrade() -> None:
    """The catalog never goes back: restore a backup instead."""
    raise NotImplementedError("the catalog never goes back: restore a backup instead")
