"""Open the catalog and its quota counters on the backend the settings choose.

``catalog_url = ""`` (the default) is the SQLite file ``data_dir/catalog.sqlite``, with
no service to run; ``postgresql://...`` is a PostgreSQL database shared by replicas.
"""

from __future__ import annotations

from pathlib import Path

from proxy.catalog.base import Catalog
from proxy.catalog.postgres import PostgresDatabase, open_postgres_catalog
from proxy.catalog.sqlite import open_catalog
from proxy.quota.store import QuotaStore, SQLiteQuotaStore
from proxy.quota.store_postgres import PostgresQuotaStore


async def open_catalog_at(url: str, sqlite_path: Path) -> tuple[Catalog, QuotaStore]:
    """The catalog at ``url`` (``""``: the SQLite file ``sqlite_path``) and its quota store."""
    if url:
        catalog = await open_postgres_catalog(url)
        assert isinstance(catalog.database, PostgresDatabase)
        return catalog, PostgresQuotaStore(catalog.database)
    catalog = await open_catalog(sqlite_path)
    try:
        # After the catalog: its migrations made the counters' table.
        return catalog, await SQLiteQuotaStore(sqlite_path).open()
    except BaseException:
        await catalog.close()
        raise
