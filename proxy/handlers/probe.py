"""Test connection, for an unsaved config or a saved server (SPEC §2)."""

from __future__ import annotations

import base64
from typing import Any

import attrs
from aiohttp import web
from pydantic import ValidationError

from proxy.errors import InvalidInput, error_body, status_for
from proxy.handlers.servers import get_record
from proxy.http import json_object, json_response, number, read_json
from proxy.keys import SERVICES
from proxy.schemas import LatLon, ServerConfig, parse_config
from proxy.upstream.probe import ProbeResult, test_connection, url_findings

MAX_PREVIEW_SIZE = 2048


async def test_unsaved(request: web.Request) -> web.Response:
    """POST /servers/test with ``{"server": {...}, "lat", "lon", "resolution", "size"}``."""
    body = json_object(await read_json(request))
    raw = json_object(body.get("server"), "server")
    findings = url_findings(raw)
    try:
        config = parse_config(raw)
    except InvalidInput as exc:
        report = {"findings": [attrs.asdict(f) for f in findings]} if findings else {}
        return json_response({**error_body(exc), **report}, status_for(exc))
    return await _answer(request, config, body, findings)


async def test_saved(request: web.Request) -> web.Response:
    """POST /servers/{id}/test with optional ``{"lat", "lon", "resolution", "size"}``."""
    record = await get_record(request)
    body = json_object(await read_json(request, required=False))
    return await _answer(request, parse_config(record.config), body, [])


async def _answer(
    request: web.Request, config: ServerConfig, body: dict[str, Any], findings: list[Any]
) -> web.Response:
    services = request.app[SERVICES]
    lat, lon = _place(config, body)
    size = int(number(body, "size", services.settings.preview_size) or 0)
    if not 16 <= size <= MAX_PREVIEW_SIZE:
        raise InvalidInput(f"size must be between 16 and {MAX_PREVIEW_SIZE} px")
    resolution = number(body, "resolution")
    if resolution is not None and resolution <= 0:
        raise InvalidInput("resolution must be a positive number of m/px")
    result = await test_connection(
        config,
        services.upstream,
        lat=lat,
        lon=lon,
        resolution=resolution,
        size=size,
        limits=services.read_limits,
    )
    result.findings[:0] = findings
    return _response(request, result)


def _place(config: ServerConfig, body: dict[str, Any]) -> tuple[float, float]:
    lat, lon = number(body, "lat"), number(body, "lon")
    if lat is None or lon is None:
        if config.preview is None:
            raise InvalidInput(
                "lat and lon are required", hint="give lat/lon, or a preview point in the config"
            )
        return config.preview.lat, config.preview.lon
    try:
        point = LatLon(lat=lat, lon=lon)
    except ValidationError:
        raise InvalidInput("lat must be within ±85.05 and lon within ±180") from None
    return point.lat, point.lon


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
