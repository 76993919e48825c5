"""Tile routes for map clients, tile tokens and cache management (SPEC §3).

The tile and TileJSON handlers authenticate inline (API key, or ``?token=``) and render
their own errors, skipping the middlewares: they are the hit path.

Where the upstream has no data, the answer is a transparent PNG (200, ``X-Tile-Empty:
true``, kept by clients for ``negative_ttl``), as MapProxy does for transparent layers:
map clients draw nothing there instead of logging errors or showing broken tiles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from proxy.api_models import TileTokenAsk, validate_body
from proxy.auth import given_key, inline_auth, valid_key
from proxy.cache.entry import strong_etag
from proxy.cache.tiles import CacheResult, CacheStatus
from proxy.errors import BadRequest, Unauthorized, error_body, error_headers, status_for
from proxy.handlers.servers import get_record
from proxy.http import json_response, read_json
from proxy.keys import SERVICES
from proxy.metrics import SERVER
from proxy.services import Services
from proxy.tiles import codec
from proxy.tiles.purge import parse_bbox, select
from proxy.tiles.request import TileAsk, parse_tile
from proxy.tiles.tilejson import base_url, tilejson
from streaming.errors import SourceServiceException, SourceWrongContentType

log = logging.getLogger(__name__)

BAD_CONTENT = (SourceWrongContentType, SourceServiceException)


def authorize(request: web.Request, services: Services, server_id: str) -> None:
    """The API key (header) or a tile token for this server (``?token=``), else 401."""
    if valid_key(given_key(request), services.api_keys):
        return
    token = request.query.get("token")
    if token is None:
        raise Unauthorized(
            "a valid API key or tile token is required",
            hint="send the key in X-API-Key, or mint a token with POST "
            "/servers/{id}/tile-tokens and pass it as ?token=",
        )
    services.tokens.verify(token, server_id)


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The SPEC §7 answer of a failed tile request (the middlewares are skipped)."""
    status = status_for(exc)
    body = error_body(exc)
    if isinstance(exc, BAD_CONTENT):  # an HTML page or an OGC exception with HTTP 200
        body["error"]["code"] = "upstream_bad_content"
    if status == 500:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json_response(body, status, error_headers(exc))


@inline_auth
async def get_tile(request: web.Request) -> web.Response:
    """GET /servers/{id}/tiles/{z}/{x}/{y}[@2x][.png|.jpg|.jpeg|.webp] (WebMercatorQuad).

    No extension: the upstream's own format. Answers carry ``ETag``, ``Cache-Control`` and
    ``X-Cache: HIT|MISS|STALE``; ``If-None-Match`` gets a 304. Where the upstream has no
    data: a transparent PNG with ``X-Tile-Empty: true``.
    """
    services = request.app[SERVICES]
    match = request.match_info
    server_id = match["id"]
    label = SERVER.set(server_id)  # metrics of the cache and upstream by server
    try:
        authorize(request, services, server_id)
        ask = parse_tile(match["z"], match["x"], match["y"])
        plan = await services.tiles.plan(server_id)
        result = await services.tiles.tile(plan, ask)
    except Exception as exc:  # noqa: BLE001 - every error becomes a SPEC §7 answer
        return error_response(request, exc)
    finally:
        SERVER.reset(label)
    services.tiles.count(server_id, _x_cache(result))
    return tile_response(request, result, ask, services.settings.negative_ttl)


def _x_cache(result: CacheResult) -> str:
    # A no-data answer is a HIT once cached; which it was is not told apart (NEGATIVE).
    return "MISS" if result.status is CacheStatus.NEGATIVE else result.status.value


_EMPTY_ETAG: dict[int, str] = {}


def tile_response(
    request: web.Request, result: CacheResult, ask: TileAsk, negative_ttl: float
) -> web.Response:
    """The tile answer: the entry's body and precomputed headers, or 304, or an empty tile."""
    entry = result.entry
    if entry is not None:
        headers = dict(entry.headers)
        body = entry.body
    else:
        body = codec.transparent_png(ask.tile_px)
        etag = _EMPTY_ETAG.get(ask.tile_px) or _EMPTY_ETAG.setdefault(
            ask.tile_px, strong_etag(body)
        )
        headers = {
            "ETag": etag,
            "Cache-Control": f"max-age={int(negative_ttl)}",
            "Content-Type": "image/png",
            "X-Tile-Empty": "true",
        }
    headers["X-Cache"] = _x_cache(result)
    inm = request.headers.get("If-None-Match")
    if inm is not None and _matches(inm, headers["ETag"]):
        headers.pop("Content-Type", None)
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


@inline_auth
async def get_tilejson(request: web.Request) -> web.Response:
    """GET /servers/{id}/tilejson.json: TileJSON 3.0.0; with ?token= the tile URLs carry it.

    ``?format=png|jpg|webp`` puts that extension on the tile URLs, ``?scale=2`` asks for
    512 px tiles (``@2x``).
    """
    services = request.app[SERVICES]
    server_id = request.match_info["id"]
    try:
        authorize(request, services, server_id)
        ext = request.query.get("format", "")
        if ext not in ("", "png", "jpg", "jpeg", "webp"):
            raise BadRequest("format is png, jpg, jpeg or webp")
        scale = request.query.get("scale", "1")
        if scale not in ("1", "2"):
            raise BadRequest("scale is 1 or 2")
        plan = await services.tiles.plan(server_id)
        base = base_url(request, services.settings.trust_forwarded)
        doc = tilejson(plan, base, request.query.get("token"), ext, int(scale))
    except Exception as exc:  # noqa: BLE001 - every error becomes a SPEC §7 answer
        return error_response(request, exc)
    # A document holding a token is a credential: no shared cache may keep it.
    return json_response(doc, headers={"Cache-Control": "no-store"})


async def mint_token(request: web.Request) -> web.Response:
    """POST /servers/{id}/tile-tokens: a signed token for this server's tiles and TileJSON.

    Pass it as ``?token=`` (map clients cannot send headers); it expires after ``ttl``
    seconds and opens no other route.
    """
    record = await get_record(request)
    ask: TileTokenAsk = validate_body(TileTokenAsk, await read_json(request, required=False))
    services = request.app[SERVICES]
    token, expires = services.tokens.mint(record.id, ask.ttl)
    base = base_url(request, services.settings.trust_forwarded)
    return json_response(
        {
            "server_id": record.id,
            "token": token,
            "expires_at": expires,
            "tilejson": f"{base}/servers/{record.id}/tilejson.json?token={token}",
            "tiles": f"{base}/servers/{record.id}/tiles/{{z}}/{{x}}/{{y}}?token={token}",
        },
        201,
        {"Cache-Control": "no-store"},
    )


async def cache_stats(request: web.Request) -> web.Response:
    """GET /servers/{id}/cache: entries and bytes cached for this server, and its hit ratio."""
    services = request.app[SERVICES]
    record = await get_record(request)
    plan = await services.tiles.plan(record.id)
    stats = await services.tile_cache.stats(plan.fingerprint)
    counts: Mapping[str, int] = services.tiles.counts.get(record.id) or {}
    answered = sum(counts.values())
    return json_response(
        {
            "server_id": record.id,
            "entries": stats.entries,
            "bytes": stats.bytes,
            "memory_entries": stats.memory_entries,
            "memory_bytes": stats.memory_bytes,
            "hits": counts.get("HIT", 0),
            "misses": counts.get("MISS", 0),
            "stale": counts.get("STALE", 0),
            "hit_ratio": counts.get("HIT", 0) / answered if answered else None,
        }
    )


async def cache_delete(request: web.Request) -> web.Response:
    """DELETE /servers/{id}/cache: all entries, or ``?min_zoom=&max_zoom=``, or ``?bbox=``.

    ``bbox`` is ``minlon,minlat,maxlon,maxlat``; it combines with a zoom range.
    """
    services = request.app[SERVICES]
    record = await get_record(request)
    zooms = _zoom_range(request.query)
    bbox = parse_bbox(request.query["bbox"]) if "bbox" in request.query else None
    plan = await services.tiles.plan(record.id)
    entries = size = 0
    for sel in select(plan, zooms, bbox):
        gone = await services.tile_cache.delete(
            plan.fingerprint, sel.zooms, sel.xs, sel.ys, sel.namespaces
        )
        entries, size = entries + gone.entries, size + gone.bytes
    return json_response(
        {"server_id": record.id, "deleted_entries": entries, "deleted_bytes": size}
    )


def _zoom_range(query: Any) -> range | None:
    if "min_zoom" not in query and "max_zoom" not in query:
        return None
    try:
        lo, hi = int(query.get("min_zoom", 0)), int(query.get("max_zoom", 24))
    except ValueError:
        raise BadRequest("min_zoom and max_zoom are whole numbers") from None
    if not 0 <= lo <= hi <= 24:
        raise BadRequest("zooms are 0 <= min_zoom <= max_zoom <= 24")
    return range(lo, hi + 1)
