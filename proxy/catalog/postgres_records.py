"""Servers and streaming images in the PostgreSQL catalog (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from proxy.catalog.base import ImageRecord, NewImage, ServerRecord
from proxy.catalog.schema import images, servers
from proxy.catalog.sqlite_servers import now

if TYPE_CHECKING:
    from proxy.catalog.postgres import PostgresDatabase

_last_stamp = ""


def creation_stamp() -> str:
    """``now()``, strictly after the last one this process made.

    Lists are oldest first by creation time, and PostgreSQL has no insertion order
    (SQLite's rowid) to break ties in one millisecond: within a process, the next
    millisecond is taken instead; across replicas, ties break by id.
    """
    global _last_stamp
    stamp = now()
    if stamp <= _last_stamp:
        later = datetime.fromisoformat(_last_stamp) + timedelta(milliseconds=1)
        stamp = later.astimezone(UTC).isoformat(timespec="milliseconds")
    _last_stamp = stamp
    return stamp


def dumps(value: Any) -> str:
    """JSON text, as both backends store documents."""
    return orjson.dumps(value).decode()


class PostgresServerStore:
    """:class:`~proxy.catalog.base.ServerStore` on the ``servers`` table."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database

    async def create(self, config: dict[str, Any]) -> ServerRecord:
        """Store a new server under a new id."""
        stamp = creation_stamp()
        record = ServerRecord(uuid.uuid4().hex[:12], config, stamp, stamp)
        async with self.database.transaction() as db:
            await db.execute(
                servers.insert().values(
                    id=record.id, config=dumps(config), created_at=stamp, updated_at=stamp
                )
            )
        return record

    async def get(self, server_id: str) -> ServerRecord | None:
        """The server with ``server_id``, or ``None``."""
        async with self.database.transaction() as db:
            row = (await db.execute(servers.select().where(servers.c.id == server_id))).first()
        return None if row is None else _server(row)

    async def all(self) -> list[ServerRecord]:
        """Every server, oldest first."""
        query = servers.select().order_by(servers.c.created_at, servers.c.id)
        async with self.database.transaction() as db:
            return [_server(row) for row in await db.execute(query)]

    async def update(self, server_id: str, config: dict[str, Any]) -> ServerRecord | None:
        """Replace a server's config."""
        query = (
            servers.update()
            .where(servers.c.id == server_id)
            .values(config=dumps(config), updated_at=now())
            .returning(*servers.c)
        )
        async with self.database.transaction() as db:
            row = (await db.execute(query)).first()
        return None if row is None else _server(row)

    async def delete(self, server_id: str) -> bool:
        """Delete a server."""
        async with self.database.transaction() as db:
            result = await db.execute(servers.delete().where(servers.c.id == server_id))
        return bool(result.rowcount)


class PostgresImageStore:
    """:class:`~proxy.catalog.base.ImageStore` on the ``images`` table."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database

    async def create(self, image: NewImage) -> ImageRecord:
        """Store a new image under a new id."""
        record = image.stored(uuid.uuid4().hex[:12], creation_stamp())
        values = {
            "id": record.id,
            "name": record.name,
            "server_id": record.server_id,
            "server_updated_at": record.server_updated_at,
            "crs": record.crs,
            "transform": dumps(list(record.transform)),
            "width": record.width,
            "height": record.height,
            "resolution_m": record.resolution_m,
            "aois": dumps(record.aois),
            "created_at": record.created_at,
        }
        async with self.database.transaction() as db:
            await db.execute(images.insert().values(**values))
        return record

    async def get(self, image_id: str) -> ImageRecord | None:
        """The image with ``image_id``, or ``None``."""
        async with self.database.transaction() as db:
            row = (await db.execute(images.select().where(images.c.id == image_id))).first()
        return None if row is None else _image(row)

    async def all(self) -> list[ImageRecord]:
        """Every image, oldest first."""
        query = images.select().order_by(images.c.created_at, images.c.id)
        async with self.database.transaction() as db:
            return [_image(row) for row in await db.execute(query)]

    async def delete(self, image_id: str) -> bool:
        """Delete an image."""
        async with self.database.transaction() as db:
            result = await db.execute(images.delete().where(images.c.id == image_id))
        return bool(result.rowcount)


def _server(row: Any) -> ServerRecord:
    return ServerRecord(
        id=row.id,
        config=orjson.loads(row.config),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _image(row: Any) -> ImageRecord:
    a, b, c, d, e, f = (float(v) for v in orjson.loads(row.transform))
    return ImageRecord(
        id=row.id,
        name=row.name,
        server_id=row.server_id,
        server_updated_at=row.server_updated_at,
        crs=row.crs,
        transform=(a, b, c, d, e, f),
        width=int(row.width),
        height=int(row.height),
        resolution_m=float(row.resolution_m),
        aois=orjson.loads(row.aois),
        created_at=row.created_at,
    )
