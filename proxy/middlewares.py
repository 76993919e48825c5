"""Middlewares: SPEC §7 error bodies for every error, and API-key auth."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.auth import is_inline, require_key
from proxy.errors import error_body, error_headers, status_for
from proxy.handlers.metrics import METRICS_PATH
from proxy.http import json_response
from proxy.keys import SERVICES
from proxy.routes import PUBLIC_PATHS

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

HTTP_HINTS = {
    404: "check the path; the API documentation lists the routes",
    405: "check the method; the Allow header lists the ones this path takes",
    413: "send a smaller body",
}


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into a JSON error body; tracebacks go to the log only."""
    if is_inline(handler):  # renders its own errors (the tile hit path)
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        hint = HTTP_HINTS.get(exc.status, "check the method, the path and the body")
        body = {"error": {"code": code, "message": exc.reason, "hint": hint}}
        return json_response(body, exc.status, _allow(exc))
    except Exception as exc:
        status = status_for(exc)
        if status == 500:
            log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response(error_body(exc), status, error_headers(exc))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests without a valid API key (``X-API-Key`` or ``Authorization: Bearer``)."""
    if request.path in PUBLIC_PATHS or request.method == "OPTIONS" or is_inline(handler):
        return await handler(request)
    if request.path == METRICS_PATH and request.app[SERVICES].settings.metrics_public:
        return await handler(request)
    require_key(request, request.app[SERVICES].api_keys)
    return await handler(request)
