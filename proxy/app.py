"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from proxy.config import Settings
from proxy.keys import SERVICES
from proxy.middlewares import auth_middleware, error_middleware
from proxy.routes import setup_routes
from proxy.services import open_services


def create_app(settings: Settings) -> web.Application:
    """Build the service for ``settings``; resources open on startup and close on cleanup."""
    app = web.Application(middlewares=[error_middleware, auth_middleware])

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings) as svc:
            app[SERVICES] = svc
            yield

    app.cleanup_ctx.append(services)
    setup_routes(app)
    return app
