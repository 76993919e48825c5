"""Streaming images in the catalog (SQLite, PostgreSQL); the migration from servers only."""

from __future__ import annotations

import sqlite3

from proxy.catalog.base import NewImage
from proxy.catalog.migrations import MIGRATIONS
from proxy.catalog.sqlite import open_catalog

AOIS = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[6, 45], [6.1, 45], [6.1, 45.1], [6, 45.1], [6, 45]]],
            },
        }
    ],
}


def new_image(name: str = "img", server_id: str = "srv1") -> NewImage:
    return NewImage(
        name=name,
        server_id=server_id,
        server_updated_at="2024-01-02T00:00:00.000+00:00",
        crs="EPSG:3857",
        transform=(10.0, 0.0, 667_916.0, 0.0, -10.0, 5_635_549.0),
        width=1113,
        height=1570,
        resolution_m=7.07,
        aois=AOIS,
    )


async def test_images_are_stored_listed_oldest_first_and_deleted(backend):
    catalog = await backend.open()
    try:
        a = await catalog.images.create(new_image("a"))
        b = await catalog.images.create(new_image("b"))
        assert a.id != b.id
        got = await catalog.images.get(a.id)
        assert got == a
        assert got.transform == (10.0, 0.0, 667_916.0, 0.0, -10.0, 5_635_549.0)
        assert got.aois == AOIS and got.resolution_m == 7.07 and got.width == 1113
        assert [r.name for r in await catalog.images.all()] == ["a", "b"]
        assert await catalog.images.delete(a.id) is True
        assert await catalog.images.delete(a.id) is False
        assert await catalog.images.get(a.id) is None
    finally:
        await catalog.close()


async def test_images_survive_a_restart(backend):
    catalog = await backend.open()
    record = await catalog.images.create(new_image())
    await catalog.close()
    catalog = await backend.open()
    try:
        assert await catalog.images.get(record.id) == record
    finally:
        await catalog.close()


async def test_a_servers_only_file_gains_the_images_table_and_keeps_its_servers(tmp_path):
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:2]:  # the schema before images
        for statement in step:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute(
        "INSERT INTO servers VALUES (?, ?, ?, ?)",
        ("abc123", '{"type": "xyz", "name": "Old"}', "2024-01-01", "2024-01-01"),
    )
    db.close()

    catalog = await open_catalog(path)
    try:
        assert (await catalog.servers.get("abc123")) is not None
        assert await catalog.images.all() == []
        record = await catalog.images.create(new_image(server_id="abc123"))
        assert await catalog.images.get(record.id) == record
    finally:
        await catalog.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    check.close()
