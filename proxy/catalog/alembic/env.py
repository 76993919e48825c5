"""Alembic's entry point, run by ``proxy.catalog.upgrade`` (users need no alembic.ini).

The caller passes an open connection, already inside the transaction that holds the
migration lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so every
revision of one upgrade commits or rolls back together.
"""

from __future__ import annotations

from alembic import context

from proxy.catalog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters most columns by copying the table: Alembic's "batch" mode does that.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
