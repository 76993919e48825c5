"""Imagery servers: create, list, read, edit, delete, duplicate (SPEC §2)."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from proxy.catalog.base import ServerRecord
from proxy.errors import InvalidInput, NotFound
from proxy.http import json_object, json_response, read_json
from proxy.keys import SERVICES
from proxy.schemas import merge_config, public_view, stored_dict
from proxy.upstream.detect import normalize
from proxy.upstream.registry import SERVER_TYPES, parse_config


def server_view(record: ServerRecord) -> dict[str, Any]:
    """A stored server as the API shows it: secrets masked."""
    return {
        "id": record.id,
        **public_view(record.config),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


async def get_record(request: web.Request) -> ServerRecord:
    """The server named by the ``id`` path parameter, or :class:`NotFound`."""
    server_id = request.match_info["id"]
    record = await request.app[SERVICES].catalog.servers.get(server_id)
    if record is None:
        raise NotFound(f"no server with id {server_id!r}")
    return record


async def list_servers(request: web.Request) -> web.Response:
    """GET /servers."""
    records = await request.app[SERVICES].catalog.servers.all()
    return json_response({"servers": [server_view(r) for r in records]})


async def create_server(request: web.Request) -> web.Response:
    """POST /servers: validate and store a new server."""
    config = parse_config(await read_json(request))
    record = await request.app[SERVICES].catalog.servers.create(stored_dict(config))
    return json_response(server_view(record), 201, {"Location": f"/servers/{record.id}"})


async def get_server(request: web.Request) -> web.Response:
    """GET /servers/{id}; with a quota, its ``usage``: used, limit, remaining, reset time."""
    record = await get_record(request)
    view = server_view(record)
    quota = parse_config(record.config).quota
    if quota is not None:
        view["usage"] = await request.app[SERVICES].quotas.usage(record.id, quota)
    return json_response(view)


async def edit_server(request: web.Request) -> web.Response:
    """PATCH /servers/{id}: change some fields; masked secrets sent back are kept."""
    record = await get_record(request)
    changes = json_object(await read_json(request))
    config = parse_config(merge_config(record.config, changes))
    updated = await request.app[SERVICES].catalog.servers.update(record.id, stored_dict(config))
    if updated is None:  # deleted meanwhile
        raise NotFound(f"no server with id {record.id!r}")
    request.app[SERVICES].tiles.forget(record.id)  # its tiles now come from the new config
    return json_response(server_view(updated))


async def delete_server(request: web.Request) -> web.Response:
    """DELETE /servers/{id}."""
    record = await get_record(request)
    await request.app[SERVICES].catalog.servers.delete(record.id)
    request.app[SERVICES].tiles.forget(record.id)
    await request.app[SERVICES].quotas.forget(record.id)
    return web.Response(status=204)


async def duplicate_server(request: web.Request) -> web.Response:
    """POST /servers/{id}/duplicate: a copy with overrides, e.g. a new ``resolution``."""
    record = await get_record(request)
    overrides = json_object(await read_json(request, required=False))
    overrides.setdefault("name", f"{record.config['name']} (copy)")
    config = parse_config(merge_config(record.config, overrides))
    copy = await request.app[SERVICES].catalog.servers.create(stored_dict(config))
    return json_response(server_view(copy), 201, {"Location": f"/servers/{copy.id}"})


def detect_config(raw: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The config a pasted URL (plus any fields given) would create, and the findings."""
    if not isinstance(raw.get("url"), str):
        raise InvalidInput("url is required", hint="paste the URL of the server, a tile or a map")
    data, notes = normalize(raw, guess=True)
    if data.get("type") is None:
        raise InvalidInput(
            "cannot tell the server type from this URL",
            hint=f"give type too: one of {', '.join(SERVER_TYPES)}",
        )
    config = parse_config(data)
    return public_view(stored_dict(config)), [attrs.asdict(n) for n in notes]


async def detect_server(request: web.Request) -> web.Response:
    """POST /servers/detect: the config a pasted URL would create (nothing is stored)."""
    view, findings = detect_config(json_object(await read_json(request)))
    return json_response({"config": view, "findings": findings})
