"""Health and readiness."""

from __future__ import annotations

from aiohttp import web

from proxy.errors import ProxyError, error_body, hint_for
from proxy.http import json_response
from proxy.keys import SERVICES


async def health(request: web.Request) -> web.Response:
    """GET /health: the process answers."""
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """GET /ready: the catalog answers and takes writes, and the executor takes work.

    ``backends`` details each one. A degraded cache (Redis down or slow) keeps the answer
    200: tiles are still served, from the upstream, and a 503 from every replica at once
    would make the load balancer drop them all for the loss of an optimisation.
    """
    services = request.app[SERVICES]
    try:
        await services.catalog.ping()
        await services.upstream.run(int, 1)
    except ProxyError as exc:
        using = services.settings.backends()
        body = {
            "status": "not ready",
            "backends": {"catalog": "unavailable"},
            "using": using,
            **error_body(exc),
        }
        return json_response(body, 503)
    except Exception as exc:  # readiness reports any failure as not ready
        error = {"code": "not_ready", "message": str(exc), "hint": hint_for(exc)}
        return json_response({"status": "not ready", "error": error}, 503)
    cache = await services.tile_cache.backend_status()
    backends = {"catalog": "ok", "cache": cache}
    # Which implementation serves each backend: catalog, cache, jobs, outputs.
    using = services.settings.backends()
    return json_response({"status": "ready", "backends": backends, "using": using})
