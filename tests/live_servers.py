"""The service and a fake XYZ upstream on 127.0.0.1, served by a loop in another thread.

Tests that drive the service synchronously over real HTTP (the fuzzer's requests, the
browser tests' Playwright sync API) need the servers on their own event loop in a
background thread, as real servers would be.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.app import create_app
from proxy.config import load_settings
from tests.upstreams.render import GroundTruthRenderer
from tests.upstreams.xyz import xyz_app


class LiveServers:
    """``api``: the service's base URL; ``upstream``: the fake XYZ server's.

    ``settings`` override the defaults below (one API key, loopback upstreams allowed).
    """

    def __init__(
        self, data_dir: Path, renderer: GroundTruthRenderer, api_key: str, **settings: Any
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self.data_dir = data_dir
        self.renderer = renderer
        self.settings = {
            "api_keys": (api_key,),
            "allowed_networks": ("127.0.0.0/8",),
            "executor_workers": 2,
            "upstream_retries": 0,
            **settings,
        }

    def __enter__(self) -> LiveServers:
        self.thread.start()
        self.upstream = self.call(self._serve(xyz_app(self.renderer)))
        settings = load_settings(env={}, data_dir=self.data_dir, **self.settings)
        self.api = self.call(self._serve(create_app(settings)))
        return self

    def __exit__(self, *exc: object) -> None:
        for runner in reversed(self.runners):
            self.call(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the servers' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"
