"""The API's own description: the OpenAPI document and a page to read it (SPEC §7)."""

from __future__ import annotations

from aiohttp import web

from proxy.docs_page import render
from proxy.http import json_response
from proxy.openapi import API_DOC


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 document of every route."""
    return json_response(request.app[API_DOC])


async def docs_page(request: web.Request) -> web.Response:
    """GET /docs: the same document as a self-contained HTML page (no script, no CDN)."""
    return web.Response(text=render(request.app[API_DOC]), content_type="text/html")
