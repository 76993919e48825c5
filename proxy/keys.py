"""Typed application keys."""

from __future__ import annotations

from aiohttp import web

from proxy.jobs.service import Jobs
from proxy.services import Services

SERVICES = web.AppKey("services", Services)
JOBS = web.AppKey("jobs", Jobs)
