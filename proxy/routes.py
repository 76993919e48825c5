"""The route table: every route with its handler, models and summary, in one readable place.

This table is the single source of the router and of the OpenAPI document
(:mod:`proxy.openapi`): a route is added by adding one :class:`Route` here, with the
pydantic models its handler validates and answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.api_models import (
    CacheDeleted,
    CacheView,
    Capabilities,
    ConfigChanges,
    DetectAnswer,
    DetectAsk,
    ImageList,
    ImageView,
    ImportAsk,
    ImportPlan,
    ProbeAnswer,
    ProbeAsk,
    ProbeUnsaved,
    ServerConfigBody,
    ServerList,
    ServerView,
    Status,
    TileJSON,
    TileToken,
    TileTokenAsk,
)
from proxy.handlers import capabilities, docs, images, metrics, ops, probe, servers, tiles
from proxy.openapi import API_DOC, build_document
from proxy.schemas import WMTSConfig, XYZConfig

UPSTREAM_ERRORS = (403, 409, 502, 503, 504)  # routes that reach an upstream
PNG_QUERY = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "answer the preview as a raw image instead of JSON (auto: JPEG when "
    "opaque, PNG with transparency); without it, an image type in Accept does the same",
    "schema": {"type": "string", "enum": ["json", "auto", "png", "jpeg", "webp"]},
}

TOKEN_QUERY = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a tile token of this server (POST /servers/{id}/tile-tokens), for "
    "map clients that cannot send the X-API-Key header",
    "schema": {"type": "string"},
}
TILE_MEDIA = ("image/jpeg", "image/webp", "image/gif", "image/tiff")


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


@attrs.frozen(kw_only=True)
class Route:
    """One route: where, what handles it, and what it reads and answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: Any = None  # the model of the JSON request body (None: no body)
    body_required: bool = True
    ok: int = 200  # the success status
    answer: Any = None  # the model of the success answer (a str: a media type; None: empty)
    also: tuple[str, ...] = ()  # other media types of the success answer
    errors: tuple[int, ...] = ()  # error statuses beyond those the route's shape implies
    public: bool = False  # no API key needed
    query: tuple[Mapping[str, Any], ...] = ()  # OpenAPI parameter objects


ROUTES: tuple[Route, ...] = (
    Route(
        method="GET",
        path="/health",
        handler=ops.health,
        summary="The process answers",
        tag="operations",
        answer=Status,
        public=True,
    ),
    Route(
        method="GET",
        path="/ready",
        handler=ops.ready,
        summary="The catalog and the executor take work",
        tag="operations",
        answer=Status,
        errors=(503,),
        public=True,
    ),
    Route(
        method="GET",
        path="/openapi.json",
        handler=docs.openapi_json,
        summary="This document",
        tag="operations",
        answer=dict[str, Any],
        public=True,
    ),
    Route(
        method="GET",
        path="/docs",
        handler=docs.docs_page,
        summary="This document as a web page",
        tag="operations",
        answer="text/html",
        public=True,
    ),
    Route(
        method="GET",
        path=metrics.METRICS_PATH,
        handler=metrics.metrics,
        summary="Prometheus metrics (no API key needed when the setting metrics_public is true)",
        tag="operations",
        answer="text/plain",
    ),
    Route(
        method="GET",
        path="/servers",
        handler=servers.list_servers,
        summary="List the imagery servers",
        tag="servers",
        answer=ServerList,
    ),
    Route(
        method="POST",
        path="/servers",
        handler=servers.create_server,
        summary="Add an imagery server",
        tag="servers",
        body=ServerConfigBody,
        ok=201,
        answer=ServerView,
    ),
    Route(
        method="POST",
        path="/servers/test",
        handler=probe.probe_unsaved,
        summary="Test the connection of an unsaved config",
        tag="test connection",
        body=ProbeUnsaved,
        answer=ProbeAnswer,
        also=("image/png", "image/jpeg", "image/webp"),
        errors=UPSTREAM_ERRORS,
        query=(PNG_QUERY,),
    ),
    Route(
        method="POST",
        path="/servers/detect",
        handler=servers.detect_server,
        summary="The config a pasted URL would create: type, canonical URL, layers, findings",
        tag="servers",
        body=DetectAsk,
        answer=DetectAnswer,
    ),
    Route(
        method="POST",
        path="/servers/from-wmts",
        handler=capabilities.xyz_from_wmts,
        summary="The XYZ config equivalent to a WMTS config (not saved)",
        tag="capabilities",
        body=WMTSConfig,
        answer=XYZConfig,
        errors=UPSTREAM_ERRORS,
    ),
    Route(
        method="POST",
        path="/capabilities",
        handler=capabilities.describe_unsaved,
        summary="What the upstream of an unsaved config offers",
        tag="capabilities",
        body=ServerConfigBody,
        answer=Capabilities,
        errors=UPSTREAM_ERRORS,
    ),
    Route(
        method="GET",
        path="/servers/{id}",
        handler=servers.get_server,
        summary="Read an imagery server",
        tag="servers",
        answer=ServerView,
    ),
    Route(
        method="PATCH",
        path="/servers/{id}",
        handler=servers.edit_server,
        summary="Change some fields of an imagery server",
        tag="servers",
        body=ConfigChanges,
        answer=ServerView,
    ),
    Route(
        method="DELETE",
        path="/servers/{id}",
        handler=servers.delete_server,
        summary="Delete an imagery server",
        tag="servers",
        ok=204,
    ),
    Route(
        method="POST",
        path="/servers/{id}/duplicate",
        handler=servers.duplicate_server,
        summary="Copy an imagery server, with overrides",
        tag="servers",
        body=ConfigChanges,
        body_required=False,
        ok=201,
        answer=ServerView,
    ),
    Route(
        method="POST",
        path="/servers/{id}/test",
        handler=probe.probe_saved,
        summary="Test the connection of a saved server",
        tag="test connection",
        body=ProbeAsk,
        body_required=False,
        answer=ProbeAnswer,
        also=("image/png", "image/jpeg", "image/webp"),
        errors=UPSTREAM_ERRORS,
        query=(PNG_QUERY,),
    ),
    Route(
        method="GET",
        path="/servers/{id}/tiles/{z}/{x}/{y}",
        handler=tiles.get_tile,
        summary="A WebMercatorQuad tile of a server; y may end in @2x and .png, .jpg, "
        ".jpeg or .webp",
        tag="tiles",
        answer="image/png",
        also=TILE_MEDIA,
        errors=(400, 422, *UPSTREAM_ERRORS),
        query=(TOKEN_QUERY,),
    ),
    Route(
        method="GET",
        path="/servers/{id}/tilejson.json",
        handler=tiles.get_tilejson,
        summary="TileJSON 3.0.0 of a server, for map clients",
        tag="tiles",
        answer=TileJSON,
        errors=(400, 422, *UPSTREAM_ERRORS),
        query=(
            TOKEN_QUERY,
            _query(
                "format", "extension of the tile URLs", {"enum": ["png", "jpg", "jpeg", "webp"]}
            ),
            _query("scale", "2: 512 px tiles (@2x)", {"enum": ["1", "2"]}),
        ),
    ),
    Route(
        method="POST",
        path="/servers/{id}/tile-tokens",
        handler=tiles.mint_token,
        summary="Mint a signed, expiring token for the tiles and TileJSON of a server",
        tag="tiles",
        body=TileTokenAsk,
        body_required=False,
        ok=201,
        answer=TileToken,
    ),
    Route(
        method="GET",
        path="/servers/{id}/cache",
        handler=tiles.cache_stats,
        summary="Entries and bytes cached for a server, and its tile hit ratio",
        tag="tiles",
        answer=CacheView,
        errors=(422, *UPSTREAM_ERRORS),
    ),
    Route(
        method="DELETE",
        path="/servers/{id}/cache",
        handler=tiles.cache_delete,
        summary="Delete cached entries of a server: all, a zoom range, or a bbox",
        tag="tiles",
        answer=CacheDeleted,
        errors=(400, 422, *UPSTREAM_ERRORS),
        query=(
            _query(
                "min_zoom", "first zoom to delete", {"type": "integer", "minimum": 0, "maximum": 24}
            ),
            _query(
                "max_zoom", "last zoom to delete", {"type": "integer", "minimum": 0, "maximum": 24}
            ),
            _query("bbox", "minlon,minlat,maxlon,maxlat (WGS84)", {"type": "string"}),
        ),
    ),
    Route(
        method="GET",
        path="/servers/{id}/capabilities",
        handler=capabilities.describe_saved,
        summary="What the upstream of a saved server offers",
        tag="capabilities",
        answer=Capabilities,
        errors=UPSTREAM_ERRORS,
    ),
)

READ_MEDIA = ("image/tiff", "application/x-npy", "image/png", "image/jpeg")
READ_ERRORS = (400, 409, 410, 413, 502, 503, 504)
DETECTOR_QUERY = _query(
    "detector_resolution",
    "the detector's resolution, m/px (or the X-Detector-Resolution header): a read finer "
    "than detector_resolution / guard_max_ratio is refused (409 resolution_too_high)",
    {"type": "number", "exclusiveMinimum": 0},
)
SIDE = {"type": "integer", "minimum": 1, "maximum": 32768}


def _image_read(path: str, handler: Handler, summary: str, *query: Mapping[str, Any]) -> Route:
    return Route(
        method="GET",
        path=path,
        handler=handler,
        summary=summary,
        tag="images",
        answer="image/tiff",
        also=READ_MEDIA[1:],
        errors=READ_ERRORS,
        query=(*query, DETECTOR_QUERY),
    )


IMAGE_ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path="/imports/plan",
        handler=images.plan_import,
        summary="What an import would make: grid, pixels, zoom, upstream requests, bytes, cells",
        tag="images",
        body=ImportAsk,
        answer=ImportPlan,
        errors=(400, 404, *UPSTREAM_ERRORS),
    ),
    Route(
        method="POST",
        path="/imports",
        handler=images.create_import,
        summary="Import AOIs of a server as a streaming image",
        tag="images",
        body=ImportAsk,
        ok=201,
        answer=ImageView,
        errors=(400, 404, *UPSTREAM_ERRORS),
    ),
    Route(
        method="GET",
        path="/images",
        handler=images.list_images,
        summary="List the streaming images",
        tag="images",
        answer=ImageList,
    ),
    Route(
        method="GET",
        path="/images/{id}",
        handler=images.get_image,
        summary="Metadata of a streaming image",
        tag="images",
        answer=ImageView,
    ),
    Route(
        method="DELETE",
        path="/images/{id}",
        handler=images.delete_image,
        summary="Delete a streaming image",
        tag="images",
        ok=204,
    ),
    _image_read(
        "/images/{id}/window/{col_off},{row_off},{w},{h}.{fmt}",
        images.read_window,
        "A pixel window of an image (tif, npy, png, jpg)",
        _query("out_width", "decimated output width, px", SIDE),
        _query("out_height", "decimated output height, px", SIDE),
    ),
    _image_read(
        "/images/{id}/bbox/{minx},{miny},{maxx},{maxy}.{fmt}",
        images.read_bbox,
        "A bbox of an image, in any CRS (tif, npy, png, jpg)",
        _query("crs", "CRS of the bbox (default EPSG:4326, lon/lat)", {"type": "string"}),
        _query("width", "output width, px", SIDE),
        _query("height", "output height, px", SIDE),
        _query(
            "resolution",
            "output resolution, CRS units per px",
            {"type": "number", "exclusiveMinimum": 0},
        ),
    ),
    Route(
        method="GET",
        path="/images/{id}/tiles/{z}/{x}/{y}.{fmt}",
        handler=images.read_tile,
        summary="A WebMercatorQuad tile of an image (png, jpg, tif, npy)",
        tag="images",
        answer="image/png",
        also=("image/jpeg", "image/tiff", "application/x-npy"),
        errors=READ_ERRORS,
        query=(TOKEN_QUERY, DETECTOR_QUERY),
    ),
    Route(
        method="GET",
        path="/images/{id}/tilejson.json",
        handler=images.get_image_tilejson,
        summary="TileJSON 3.0.0 of an image, for map clients",
        tag="images",
        answer=TileJSON,
        errors=(400,),
        query=(
            TOKEN_QUERY,
            _query("format", "extension of the tile URLs", {"enum": ["png", "jpg"]}),
        ),
    ),
    _image_read(
        "/images/{id}/preview.{fmt}",
        images.read_preview,
        "The whole image, downsampled (tif, npy, png, jpg)",
        _query(
            "max_size",
            "longer side, px (default 1024)",
            {"type": "integer", "minimum": 1, "maximum": 4096},
        ),
    ),
    Route(
        method="GET",
        path="/images/{id}/gdal.xml",
        handler=images.gdal_xml,
        summary="A GDAL WMS description of the tiles of an image (rasterio, GDAL, QGIS)",
        tag="images",
        answer="application/xml",
        errors=(410,),
    ),
)

ROUTES = ROUTES + IMAGE_ROUTES

# Read by the auth middleware: these answer without an API key.
PUBLIC_PATHS = frozenset(route.path for route in ROUTES if route.public)


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES`, and the document describing them."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app[API_DOC] = build_document(ROUTES)
