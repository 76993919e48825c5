"""Test connection, for an unsaved config or a saved server (SPEC §2)."""

from __future__ import annotations

import base64

from aiohttp import web

from proxy.api_models import ProbeAsk, ProbeUnsaved, validate_body
from proxy.errors import InvalidInput, error_body, status_for
from proxy.handlers.servers import get_record
from proxy.http import json_response, read_json
from proxy.keys import SERVICES
from proxy.probe import ProbeRequest, ProbeResult, probe_server


async def probe_unsaved(request: web.Request) -> web.Response:
    """POST /servers/test with ``{"server": {...}, "lat", "lon", "resolution", "size"}``.

    An invalid ``server`` config is not refused outright: the answer (422) lists findings.
    """
    body: ProbeUnsaved = validate_body(ProbeUnsaved, await read_json(request))
    raw, fmt = answer_format(request, body.format)
    result = await probe_server(request.app[SERVICES], body.server, _ask(body, fmt))
    return _response(result, raw)


async def probe_saved(request: web.Request) -> web.Response:
    """POST /servers/{id}/test with optional ``{"lat", "lon", "resolution", "size"}``.

    lat/lon and resolution default to the server's preview point and resolution.
    """
    record = await get_record(request)
    body: ProbeAsk = validate_body(ProbeAsk, await read_json(request, required=False))
    raw, fmt = answer_format(request, body.format)
    result = await probe_server(request.app[SERVICES], record, _ask(body, fmt))
    return _response(result, raw)


def answer_format(request: web.Request, body_format: str | None) -> tuple[bool, str]:
    """(answer the raw image?, preview format) from ``?format=``, the body, then ``Accept``.

    ``?format=auto|png|jpeg|webp`` answers the image itself; ``?format=json`` (or none)
    answers JSON with the preview inside, in the body's ``format``. Without ``?format=``,
    an ``Accept`` that prefers an image type answers that image (``image/*``: auto).
    """
    query = request.query.get("format")
    if query is not None:
        query = query.lower()
        if query == "json":
            return False, body_format or "auto"
        if query not in QUERY_FORMATS:
            raise InvalidInput(
                f"unknown format {query!r}", hint="format is one of json, auto, png, jpeg, webp"
            )
        return True, QUERY_FORMATS[query]
    accepted = accepted_format(request.headers.get("Accept", ""))
    if accepted is not None:
        return True, accepted
    return False, body_format or "auto"


def accepted_format(accept: str) -> str | None:
    """The image format an ``Accept`` header prefers over JSON, or None.

    Highest q first, then the header's order; ``image/*`` is auto. ``*/*`` and JSON
    leave the answer JSON (what clients that name nothing get).
    """
    best: tuple[float, int, str | None] = (0.0, 0, None)
    for index, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        fmt = ACCEPT_FORMATS.get(media.strip().lower(), "")
        if q > best[0] and fmt != "":
            best = (q, -index, fmt)
    return best[2]


# What ?format= and Accept name, as formats of streaming.codecs (None in Accept: JSON).
QUERY_FORMATS = {"auto": "auto", "png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}
ACCEPT_FORMATS: dict[str, str | None] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/webp": "webp",
    "image/*": "auto",
    "application/json": None,
}


def _ask(body: ProbeAsk, fmt: str) -> ProbeRequest:
    return ProbeRequest(
        lat=body.lat, lon=body.lon, resolution=body.resolution, size=body.size, format=fmt
    )


def _response(result: ProbeResult, raw: bool) -> web.Response:
    if result.error is not None:
        return json_response(
            {**error_body(result.error), **result.report()}, status_for(result.error)
        )
    # A probe without an error always made a preview.
    assert result.image is not None and result.media_type is not None
    headers = {
        "X-Preview-Zoom": str(result.zoom),
        "X-Preview-Resolution": str(result.resolution),
        "Vary": "Accept",
    }
    if raw:
        return web.Response(body=result.image, content_type=result.media_type, headers=headers)
    return json_response(
        {
            "ok": True,
            "lat": result.lat,
            "lon": result.lon,
            "resolution": result.resolution,
            "zoom": result.zoom,
            "preview": {
                "media_type": result.media_type,
                "base64": base64.b64encode(result.image).decode(),
            },
            **result.report(),
        }
    )
