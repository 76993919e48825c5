"""The route table: path -> handler, in one readable place."""

from __future__ import annotations

from aiohttp import web

from proxy.handlers import capabilities, ops, probe, servers


def setup_routes(app: web.Application) -> None:
    """Register every route."""
    app.router.add_get("/health", ops.health)
    app.router.add_get("/ready", ops.ready)
    app.router.add_get("/servers", servers.list_servers)
    app.router.add_post("/servers", servers.create_server)
    app.router.add_post("/servers/test", probe.probe_unsaved)
    app.router.add_post("/servers/detect", servers.detect_server)
    app.router.add_post("/servers/from-wmts", capabilities.xyz_from_wmts)
    app.router.add_post("/capabilities", capabilities.describe_unsaved)
    app.router.add_get("/servers/{id}", servers.get_server)
    app.router.add_patch("/servers/{id}", servers.edit_server)
    app.router.add_delete("/servers/{id}", servers.delete_server)
    app.router.add_post("/servers/{id}/duplicate", servers.duplicate_server)
    app.router.add_post("/servers/{id}/test", probe.probe_saved)
    app.router.add_get("/servers/{id}/capabilities", capabilities.describe_saved)
