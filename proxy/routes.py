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
    Capabilities,
    ConfigChanges,
    DetectAnswer,
    DetectAsk,
    ProbeAnswer,
    ProbeAsk,
    ProbeUnsaved,
    ServerConfigBody,
    ServerList,
    ServerView,
    Status,
)
from proxy.handlers import capabilities, docs, ops, probe, servers
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
        path="/servers/{id}/capabilities",
        handler=capabilities.describe_saved,
        summary="What the upstream of a saved server offers",
        tag="capabilities",
        answer=Capabilities,
        errors=UPSTREAM_ERRORS,
    ),
)

# Read by the auth middleware: these answer without an API key.
PUBLIC_PATHS = frozenset(route.path for route in ROUTES if route.public)


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES`, and the document describing them."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app[API_DOC] = build_document(ROUTES)
