"""Test connection, for an unsaved config or a saved server (SPEC §2)."""

from __future__ import annotations

import base64

from aiohttp import web

from proxy.api_models import ProbeAsk, ProbeUnsaved, validate_body
from proxy.errors import error_body, status_for
from proxy.handlers.servers import get_record
from proxy.http import json_response, read_json
from proxy.keys import SERVICES
from proxy.probe import ProbeRequest, ProbeResult, probe_server


async def probe_unsaved(request: web.Request) -> web.Response:
    """POST /servers/test with ``{"server": {...}, "lat", "lon", "resolution", "size"}``.

    An invalid ``server`` config is not refused outright: the answer (422) lists findings.
    """
    body: ProbeUnsaved = validate_body(ProbeUnsaved, await read_json(request))
    result = await probe_server(request.app[SERVICES], body.server, _ask(body))
    return _response(request, result)


async def probe_saved(request: web.Request) -> web.Response:
    """POST /servers/{id}/test with optional ``{"lat", "lon", "resolution", "size"}``.

    lat/lon and resolution default to the server's preview point and resolution.
    """
    record = await get_record(request)
    body: ProbeAsk = validate_body(ProbeAsk, await read_json(request, required=False))
    result = await probe_server(request.app[SERVICES], record, _ask(body))
    return _response(request, result)


def _ask(body: ProbeAsk) -> ProbeRequest:
    return ProbeRequest(lat=body.lat, lon=body.lon, resolution=body.resolution, size=body.size)


def _response(request: web.Request, result: ProbeResult) -> web.Response:
    if result.error is not None:
        return json_response(
            {**error_body(result.error), **result.report()}, status_for(result.error)
        )
    assert result.png is not None  # a probe without an error always made a preview
    headers = {"X-Preview-Zoom": str(result.zoom), "X-Preview-Resolution": str(result.resolution)}
    if request.query.get("format") == "png" or request.headers.get("Accept") == "image/png":
        return web.Response(body=result.png, content_type="image/png", headers=headers)
    return json_response(
        {
            "ok": True,
            "lat": result.lat,
            "lon": result.lon,
            "resolution": result.resolution,
            "zoom": result.zoom,
            "preview": {
                "media_type": "image/png",
                "base64": base64.b64encode(result.png).decode(),
            },
            **result.report(),
        }
    )
