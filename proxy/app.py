"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from proxy.config import Settings
from proxy.jobs.kinds import JobKind
from proxy.jobs.registry import default_kinds
from proxy.jobs.service import Jobs
from proxy.keys import JOBS, SERVICES
from proxy.middlewares import auth_middleware, error_middleware
from proxy.routes import setup_routes
from proxy.services import open_services


def create_app(settings: Settings, kinds: Mapping[str, JobKind] | None = None) -> web.Application:
    """Build the service for ``settings``; resources open on startup and close on cleanup.

    The job runner starts with them (unless ``job_workers`` is 0) and resumes unfinished
    jobs; ``kinds`` replaces the kinds of job it runs (tests).
    """
    app = web.Application(middlewares=[error_middleware, auth_middleware])

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings) as svc:
            app[SERVICES] = svc
            jobs = Jobs(svc, default_kinds() if kinds is None else kinds)
            app[JOBS] = jobs
            jobs.start()
            try:
                yield
            finally:
                await jobs.stop()

    app.cleanup_ctx.append(services)
    setup_routes(app)
    return app
