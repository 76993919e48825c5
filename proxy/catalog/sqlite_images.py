"""Streaming images in the SQLite catalog."""

from __future__ import annotations

import sqlite3
import uuid
from typing import TYPE_CHECKING

import orjson

from proxy.catalog.base import ImageRecord, NewImage
from proxy.catalog.sqlite_servers import now

if TYPE_CHECKING:
    from proxy.catalog.sqlite import SQLiteDatabase

# Named, never ``*``: a column added by a migration changes no query here.
COLUMNS = (
    "id, name, server_id, server_updated_at, crs, transform, width, height, resolution_m, "
    "aois, created_at"
)


class SQLiteImageStore:
    """:class:`~proxy.catalog.base.ImageStore` on the ``images`` table."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self.database = database

    async def create(self, image: NewImage) -> ImageRecord:
        """Store a new image under a new id."""
        record = image.stored(uuid.uuid4().hex[:12], now())

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO images ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    record.server_id,
                    record.server_updated_at,
                    record.crs,
                    orjson.dumps(list(record.transform)).decode(),
                    record.width,
                    record.height,
                    record.resolution_m,
                    orjson.dumps(record.aois).decode(),
                    record.created_at,
                ),
            )

        await self.database.run(insert)
        return record

    async def get(self, image_id: str) -> ImageRecord | None:
        """The image with ``image_id``, or ``None``."""

        def select(db: sqlite3.Connection) -> ImageRecord | None:
            row = db.execute(f"SELECT {COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
            return None if row is None else _record(row)

        return await self.database.run(select)

    async def all(self) -> list[ImageRecord]:
        """Every image, oldest first."""

        def select(db: sqlite3.Connection) -> list[ImageRecord]:
            rows = db.execute(f"SELECT {COLUMNS} FROM images ORDER BY created_at, rowid")
            return [_record(row) for row in rows]

        return await self.database.run(select)

    async def delete(self, image_id: str) -> bool:
        """Delete an image."""

        def delete(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount > 0

        return await self.database.run(delete)


def _record(row: sqlite3.Row) -> ImageRecord:
    a, b, c, d, e, f = (float(v) for v in orjson.loads(row["transform"]))
    return ImageRecord(
        id=row["id"],
        name=row["name"],
        server_id=row["server_id"],
        server_updated_at=row["server_updated_at"],
        crs=row["crs"],
        transform=(a, b, c, d, e, f),
        width=int(row["width"]),
        height=int(row["height"]),
        resolution_m=float(row["resolution_m"]),
        aois=orjson.loads(row["aois"]),
        created_at=row["created_at"],
    )
