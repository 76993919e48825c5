"""The catalog on PostgreSQL (``catalog_url = postgresql://...``), for several replicas.

Store choice: SQLAlchemy Core stores for PostgreSQL *beside* the hand-written SQLite
ones. The schema (``schema.py``) and its history (Alembic, ``upgrade.py``) are one for
both databases, as issue 16 asks; the stores are two because their concurrency differs
where it matters: SQLite serializes every writer with ``BEGIN IMMEDIATE`` on one thread,
while PostgreSQL claims with row locks (``FOR UPDATE SKIP LOCKED``) and admits quota
under advisory locks. Rewriting the embedded default's released, tested stores would
risk the one-command install for no user-visible gain; both pass the same tests
(tests/proxy/catalog_backends.py runs every catalog test on each backend).

Every operation is one short transaction on a pooled asyncpg connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from proxy.catalog.base import Catalog
from proxy.catalog.postgres_cells import PostgresCellStore
from proxy.catalog.postgres_jobs import PostgresJobStore
from proxy.catalog.postgres_records import PostgresImageStore, PostgresServerStore
from proxy.catalog.upgrade import upgrade_postgresql
from proxy.errors import CatalogUnavailable, StartupError

# A process stopped (SIGSTOP, a VM paused) inside one of its short transactions holds its
# row locks: claims skip that cell (SKIP LOCKED) and wait on that job's row for as long as
# it sleeps. The server ends such a session after this, so its cell's lease can expire
# and be reclaimed like any other; the process finds its claim lost when it wakes.
IDLE_IN_TRANSACTION_MS = 2000
SESSION_SETTINGS = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS)}

# What a lost or refused database connection raises, through SQLAlchemy or not.
UNAVAILABLE = (OSError, asyncpg.PostgresError, sqlalchemy.exc.OperationalError)


def async_url(url: str) -> str:
    """``postgresql://...`` as SQLAlchemy's asyncpg URL."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ValueError(f"not a PostgreSQL URL: {url}")
    return f"postgresql+asyncpg://{rest}"


async def open_postgres_catalog(url: str) -> Catalog:
    """Open (creating or upgrading the schema of) the PostgreSQL catalog at ``url``."""
    database = await PostgresDatabase(url).open()
    return Catalog(
        database=database,
        servers=PostgresServerStore(database),
        images=PostgresImageStore(database),
        jobs=PostgresJobStore(database),
        cells=PostgresCellStore(database),
    )


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    backend = "postgresql"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        # pre_ping: a connection the server dropped (restart) is replaced, not handed out.
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"server_settings": SESSION_SETTINGS},
        )

    async def open(self) -> PostgresDatabase:
        """Upgrade the schema to this release's head; an unreachable database stops the start."""
        try:
            await upgrade_postgresql(self.engine)
        except UNAVAILABLE + (sqlalchemy.exc.DBAPIError,) as exc:
            await self.engine.dispose()
            safe = sa.make_url(async_url(self.url)).render_as_string(hide_password=True)
            raise StartupError(f"the catalog {safe} cannot be used: {_reason(exc)}") from None
        except BaseException:
            await self.engine.dispose()
            raise
        return self

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed at the end of the block, rolled back on an error."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except sqlalchemy.exc.IntegrityError:
            raise  # a bug of the caller, not the state of the database
        except UNAVAILABLE + (sqlalchemy.exc.DBAPIError,) as exc:
            raise CatalogUnavailable(f"the catalog cannot be used: {_reason(exc)}") from None

    async def ping(self) -> None:
        """Check the database answers a query (readiness)."""
        async with self.transaction() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _reason(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
