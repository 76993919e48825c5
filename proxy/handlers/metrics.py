"""``GET /metrics``: the Prometheus text exposition."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from proxy.keys import SERVICES
from proxy.quota.share import report_usage

METRICS_PATH = "/metrics"


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics (API key needed unless the setting ``metrics_public`` is true)."""
    services = request.app[SERVICES]
    services.metrics.refresh()  # reads the cache tiers, which live in the loop
    services.metrics.jobs.set_states(await services.catalog.jobs.count_by_state())
    await report_usage(services)  # quota gauges, from the shared counters
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(services.executor, services.metrics.expose)
    # The content type carries a version parameter, which content_type= does not take.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
