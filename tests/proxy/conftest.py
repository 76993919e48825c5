"""Fixtures of tests/proxy: the catalog backends (tests/proxy/catalog_backends.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.proxy.catalog_backends import Backend, create_database, drop_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Backend]:  # type: ignore[no-untyped-def]
    """Each catalog backend in turn, empty (PostgreSQL: a fresh database, dropped after)."""
    if request.param == "sqlite":
        yield Backend("sqlite", "", tmp_path / "c.sqlite")
        return
    url = await create_database()
    try:
        yield Backend("postgresql", url, tmp_path / "c.sqlite")
    finally:
        await drop_database(url)


@pytest.fixture
async def postgresql(tmp_path) -> AsyncIterator[Backend]:  # type: ignore[no-untyped-def]
    """PostgreSQL alone (a fresh database, dropped after), for what only it has."""
    url = await create_database()
    try:
        yield Backend("postgresql", url, tmp_path / "c.sqlite")
    finally:
        await drop_database(url)
