"""The operator console: static files served by the service at ``/console`` (issue 10).

The page itself is public (it holds no data: it asks for the API key and sends it in the
``X-API-Key`` header of every API call, never in a URL); it is not an API operation, so it
stays out of the OpenAPI document. Files come from ``static/`` only (no traversal), with
a Content-Security-Policy that keeps every request on the page's origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from aiohttp import web

from proxy.auth import inline_auth
from proxy.errors import NotFound
from proxy.handlers.tiles import error_response

__all__ = ["CONSOLE_PREFIX", "setup_console"]

CONSOLE_PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
MEDIA = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def _csp(index: str) -> str:
    """Same origin only; the inline import map is allowed by its hash, nothing else inline.

    MapLibre starts its worker from a ``blob:`` module and decodes tiles to ``blob:``
    images; previews are ``data:`` images; test connection previews come as base64.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in _IMPORT_MAP.findall(index)
    )
    return (
        "default-src 'self'; "
        f"script-src 'self' {hashes}; "
        "worker-src 'self' blob:; "
        "img-src 'self' data: blob:; "
        "style-src 'self' 'unsafe-inline'; "  # MapLibre positions its controls inline
        "connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _resolve(tail: str) -> Path:
    """The file under ``static/`` for the path after ``/console/``; NotFound otherwise."""
    target = (STATIC / (tail or "index.html")).resolve()
    if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
        raise NotFound(
            f"no console file {tail!r}", hint="open /console/ and follow the console's links"
        )
    if target.suffix not in MEDIA:
        raise NotFound(f"no console file {tail!r}", hint="open /console/")
    return target


@inline_auth  # public: the page holds no data, its API calls carry the key
async def console_file(request: web.Request) -> web.StreamResponse:
    """GET /console/{path}: a file of the console (index.html for the folder)."""
    try:
        target = _resolve(request.match_info.get("path", ""))
    except NotFound as exc:
        return error_response(request, exc)
    headers = {
        "Content-Type": MEDIA[target.suffix],
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # the vendored files never change under a version; the app's own files may
        "Cache-Control": "max-age=86400" if "vendor" in target.parts else "no-cache",
    }
    if target.suffix == ".html":
        text = target.read_text()
        headers["Content-Security-Policy"] = _csp(text)
        return web.Response(text=text, headers=headers, content_type=None)
    return web.FileResponse(target, headers=headers)


@inline_auth
async def console_root(request: web.Request) -> web.StreamResponse:
    """GET /console: to /console/, so the page's relative URLs resolve under it."""
    raise web.HTTPFound(CONSOLE_PREFIX + "/")


def setup_console(app: web.Application) -> None:
    """Register the console's routes (public, outside the OpenAPI document)."""
    app.router.add_get(CONSOLE_PREFIX, console_root)
    app.router.add_get(CONSOLE_PREFIX + "/{path:.*}", console_file)
