"""What an upstream offers, and the WMTS -> XYZ helper (SPEC §2)."""

from __future__ import annotations

from aiohttp import web

from proxy.errors import InvalidInput
from proxy.handlers.servers import get_record
from proxy.http import json_response, read_json
from proxy.keys import SERVICES
from proxy.quota.enforce import owned_by
from proxy.schemas import WMTSConfig
from proxy.upstream.registry import describe, parse_config
from proxy.upstream.wmts_to_xyz import wmts_to_xyz


async def describe_unsaved(request: web.Request) -> web.Response:
    """POST /capabilities with a server config: layers, styles, formats, CRSs, grids."""
    config = parse_config(await read_json(request))
    return json_response(await describe(config, request.app[SERVICES].upstream))


async def describe_saved(request: web.Request) -> web.Response:
    """GET /servers/{id}/capabilities."""
    record = await get_record(request)
    config = parse_config(record.config)
    with owned_by(record.id):  # a capabilities request counts against the server's quota
        return json_response(await describe(config, request.app[SERVICES].upstream))


async def xyz_from_wmts(request: web.Request) -> web.Response:
    """POST /servers/from-wmts with a WMTS config: the equivalent XYZ config (not saved)."""
    config = parse_config(await read_json(request))
    if not isinstance(config, WMTSConfig):
        raise InvalidInput("this helper takes a wmts config", hint='set "type": "wmts"')
    return json_response(await wmts_to_xyz(config, request.app[SERVICES].upstream))
