"""The route table: every route with its handler, models and summary, in one readable place.

This table is the single source of the router and of the OpenAPI document
(:mod:`proxy.openapi`): a route is added by adding one :class:`Route` to
:mod:`proxy.routes.servers`, :mod:`proxy.routes.images` or :mod:`proxy.routes.jobs`,
with the pydantic models its handler validates and answers.
"""

from __future__ import annotations

from aiohttp import web

from proxy.console import setup_console
from proxy.openapi import API_DOC, build_document
from proxy.routes.images import IMAGE_ROUTES
from proxy.routes.jobs import JOB_ROUTES
from proxy.routes.route import Route
from proxy.routes.servers import SERVER_ROUTES

__all__ = ["PUBLIC_PATHS", "ROUTES", "Route", "setup_routes"]

ROUTES: tuple[Route, ...] = SERVER_ROUTES + IMAGE_ROUTES + JOB_ROUTES

# Read by the auth middleware: these answer without an API key.
PUBLIC_PATHS = frozenset(route.path for route in ROUTES if route.public)


def setup_routes(app: web.Application) -> None:
    """Register every route of :data:`ROUTES`, and the document describing them."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app[API_DOC] = build_document(ROUTES)
    setup_console(app)  # static files, public and outside the document
