"""Imports and streaming images: plan, create, list, read, describe (SPEC §4, §5).

Reads check their input (format, window, sizes, CRS) and the image (404) and its server
(410) before the library is asked anything; the library half (``streaming.image``) is
imported on the first import or read, by :func:`_service`. The tile and TileJSON routes
authenticate inline (API key, or ``?token=`` of the image or of its server) like the
server tile routes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from proxy.api_models import ImportAsk, validate_body
from proxy.auth import given_key, inline_auth, valid_key
from proxy.catalog.base import ImageRecord
from proxy.errors import BadRequest, Unauthorized
from proxy.handlers.tiles import error_response
from proxy.http import json_response, read_json
from proxy.images import ask as asks
from proxy.images.formats import Encoded, NpyTarget, encode, georef_headers
from proxy.images.gdal_xml import gdal_wms_xml
from proxy.images.store import (
    footprint,
    image_view,
    import_server,
    load_image,
    load_server,
    tile_intersects,
)
from proxy.images.tilejson import image_tilejson
from proxy.jobs.downloads import start_download
from proxy.keys import JOBS, SERVICES
from proxy.services import Services
from proxy.tiles.tilejson import base_url
from proxy.tokens import image_scope
from streaming import grid as tiling
from streaming.types import TileIndex

if TYPE_CHECKING:
    from proxy.images.service import ImageService

log = logging.getLogger(__name__)
ANSWER_CHUNK = 1 << 20  # bytes per write of a large read's body


def _service(request: web.Request) -> ImageService:
    from proxy.images.service import ImageService  # the library half, on first use

    return ImageService(request.app[SERVICES])


async def plan_import(request: web.Request) -> web.Response:
    """POST /imports/plan: the grid, pixels, zoom, upstream requests, bytes and cells."""
    ask: ImportAsk = validate_body(ImportAsk, await read_json(request))
    server = await import_server(request.app[SERVICES], ask)
    planned = await _service(request).plan(ask, server)
    return json_response(planned.answer)


async def create_import(request: web.Request) -> web.Response:
    """POST /imports: make a streaming image at once (``method: streaming``, 201).

    ``method: download`` also starts a job materializing it (202 ``{"image", "job"}``).
    """
    ask: ImportAsk = validate_body(ImportAsk, await read_json(request))
    server = await import_server(request.app[SERVICES], ask)
    record = await _service(request).create(ask, server)
    if ask.method == "download":
        job = await start_download(request.app[JOBS], record, ask)
        answer = {"image": image_view(record), "job": request.app[JOBS].view(job)}
        return json_response(answer, 202, {"Location": f"/jobs/{job.id}"})
    return json_response(image_view(record), 201, {"Location": f"/images/{record.id}"})


async def list_images(request: web.Request) -> web.Response:
    """GET /images: every streaming image, oldest first."""
    records = await request.app[SERVICES].catalog.images.all()
    return json_response({"images": [image_view(r) for r in records]})


async def get_image(request: web.Request) -> web.Response:
    """GET /images/{id}: CRS, transform, bounds, size, bands, dtype, resolution, AOIs."""
    record = await load_image(request.app[SERVICES], request.match_info["id"])
    return json_response(image_view(record))


async def delete_image(request: web.Request) -> web.Response:
    """DELETE /images/{id}: forget the image (its server and cached tiles stay)."""
    services = request.app[SERVICES]
    record = await load_image(services, request.match_info["id"])
    await services.catalog.images.delete(record.id)
    return web.Response(status=204)


async def read_window(request: web.Request) -> web.StreamResponse:
    """GET /images/{id}/window/{col_off},{row_off},{w},{h}.{fmt}: a pixel window.

    ``out_width``/``out_height`` decimate it (coarser tiles are read). Formats: tif, npy
    (uint8 (4, h, w): R, G, B, mask), png (alpha = mask), jpg. ``X-CRS`` and
    ``X-Transform`` carry the georeferencing. ``detector_resolution`` (or the
    ``X-Detector-Resolution`` header) turns on the resolution guard.
    """
    m = request.match_info
    fmt = asks.parse_format(m["fmt"])
    record = await load_image(request.app[SERVICES], m["id"])
    window = asks.parse_window(record, (m["col_off"], m["row_off"], m["w"], m["h"]), request.query)
    return await _read(request, record, window, fmt)


async def read_bbox(request: web.Request) -> web.StreamResponse:
    """GET /images/{id}/bbox/{minx},{miny},{maxx},{maxy}.{fmt}: a bbox in ``crs``.

    ``crs`` defaults to EPSG:4326 (lon/lat order); ``width``/``height`` or ``resolution``
    (units of ``crs`` per pixel) set the output size.
    """
    m = request.match_info
    fmt = asks.parse_format(m["fmt"])
    bbox = asks.parse_bbox((m["minx"], m["miny"], m["maxx"], m["maxy"]), request.query)
    record = await load_image(request.app[SERVICES], m["id"])
    return await _read(request, record, bbox, fmt)


async def read_preview(request: web.Request) -> web.StreamResponse:
    """GET /images/{id}/preview.{fmt}: the whole image, ``max_size`` px at most (1024)."""
    m = request.match_info
    fmt = asks.parse_format(m["fmt"])
    preview = asks.parse_preview(request.query)
    record = await load_image(request.app[SERVICES], m["id"])
    return await _read(request, record, preview, fmt)


@inline_auth
async def read_tile(request: web.Request) -> web.StreamResponse:
    """GET /images/{id}/tiles/{z}/{x}/{y}.{fmt}: a WebMercatorQuad tile (256 px).

    Outside the image the tile is empty (transparent) and nothing is read.
    """
    services = request.app[SERVICES]
    m = request.match_info
    try:
        record = await _authorized_image(request, services)
        fmt = asks.parse_format(m["fmt"])
        tile = asks.parse_tile(m["z"], m["x"], m["y"])
        if not tile_intersects(footprint(record), tile.z, tile.x, tile.y):
            return await _empty_tile(services, fmt, tile)
        return await _read(request, record, tile, fmt)
    except Exception as exc:  # noqa: BLE001 - every error becomes a SPEC §7 answer
        return error_response(request, exc)


@inline_auth
async def get_image_tilejson(request: web.Request) -> web.Response:
    """GET /images/{id}/tilejson.json: TileJSON 3.0.0; with ?token= the tile URLs carry it."""
    services = request.app[SERVICES]
    try:
        record = await _authorized_image(request, services)
        ext = asks.parse_format(request.query.get("format", "png"))
        if ext not in ("png", "jpg"):
            raise BadRequest("format is png or jpg")
        base = base_url(request, services.settings.trust_forwarded)
        doc = image_tilejson(record, base, request.query.get("token"), ext)
    except Exception as exc:  # noqa: BLE001 - every error becomes a SPEC §7 answer
        return error_response(request, exc)
    return json_response(doc, headers={"Cache-Control": "no-store"})


async def gdal_xml(request: web.Request) -> web.Response:
    """GET /images/{id}/gdal.xml: a GDAL WMS (TMS) description of the image's tiles.

    ``rasterio.open``, ``gdal_translate`` and QGIS open it as a 4-band raster (EPSG:3857).
    The tile URL holds a token of this image (``image_token_ttl``): treat the file as a
    credential.
    """
    services = request.app[SERVICES]
    record = await load_image(services, request.match_info["id"])
    await load_server(services, record)  # a description of an image that cannot be read: 410
    token, _ = services.tokens.mint(image_scope(record.id), services.settings.image_token_ttl)
    base = base_url(request, services.settings.trust_forwarded)
    url = f"{base}/images/{record.id}/tiles/${{z}}/${{x}}/${{y}}.png?token={token}"
    return web.Response(
        text=gdal_wms_xml(footprint(record), url),
        content_type="application/xml",
        headers={"Cache-Control": "no-store"},
    )


async def _authorized_image(request: web.Request, services: Services) -> ImageRecord:
    """The image, for the API key or a token of the image (or of its server), else 401."""
    image_id = request.match_info["id"]
    if valid_key(given_key(request), services.api_keys):
        return await load_image(services, image_id)
    token = request.query.get("token")
    if token is None:
        raise Unauthorized(
            "a valid API key or tile token is required",
            hint="send the key in X-API-Key, or take the token in GET /images/{id}/gdal.xml",
        )
    try:
        services.tokens.verify(token, image_scope(image_id))
    except Unauthorized:
        record = await services.catalog.images.get(image_id)
        if record is None:
            raise
        services.tokens.verify(token, record.server_id)  # the image's server's token
        return record
    return await load_image(services, image_id)


async def _read(
    request: web.Request, record: ImageRecord, ask: asks.ReadAsk, fmt: str
) -> web.StreamResponse:
    services = request.app[SERVICES]
    detector = asks.detector_resolution(request.query, request.headers)
    server = await load_server(services, record)  # 410 before the library is asked
    # Encoded in the executor job that composes and masks the read (one job, not three);
    # an NPY answer's tiles are pasted into its own buffer.
    target = NpyTarget() if fmt == "npy" else None
    result, encoded = await _service(request).read_then(
        record,
        server,
        ask,
        detector,
        lambda rgba, grid: encode(rgba, grid.crs, grid.transform, fmt, target),
        target,
    )
    grid = result.grid
    headers = georef_headers(grid.crs, grid.transform)
    headers.update(
        {
            "X-Zoom": "" if result.zoom is None else str(result.zoom),
            "X-Upstream-Requests": str(result.requests),
            "X-Resolution": repr(float(result.resolution)),
            "X-Ground-Resolution": repr(float(result.ground_resolution)),
        }
    )
    del result  # the read's pixels (and the canvas they view) go before the body is sent
    return await _answer(request, encoded, headers)


async def _answer(
    request: web.Request, encoded: Encoded, headers: dict[str, str]
) -> web.StreamResponse:
    """The encoded read; a large body goes out in views of its buffer, not one joined copy.

    aiohttp joins headers and a whole body into one new buffer before writing (Python
    3.11), and the transport copies what the socket did not take: 2 x 64 MB for a 4096²
    NPY. Written a chunk at a time, each waits for the socket (flow control).
    """
    body = memoryview(encoded.body)
    if body.nbytes <= ANSWER_CHUNK:
        return web.Response(body=encoded.body, content_type=encoded.media_type, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = encoded.media_type
    response.content_length = body.nbytes
    await response.prepare(request)
    for start in range(0, body.nbytes, ANSWER_CHUNK):
        await response.write(body[start : start + ANSWER_CHUNK])
    await response.write_eof()
    return response


async def _empty_tile(services: Services, fmt: str, tile: asks.TileAsk) -> web.Response:
    rgba = np.zeros((4, 256, 256), dtype=np.uint8)
    tms = tiling.web_mercator_tms()
    transform = tiling.tile_transform(tms, TileIndex(tile.x, tile.y, tile.z))
    loop = asyncio.get_running_loop()
    encoded: Encoded = await loop.run_in_executor(
        services.executor, encode, rgba, tiling.WEB_MERCATOR_CRS, transform, fmt
    )
    return web.Response(
        body=encoded.body, content_type=encoded.media_type, headers={"X-Tile-Empty": "true"}
    )
