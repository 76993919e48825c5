"""The service and a fake XYZ upstream on 127.0.0.1, served by a loop in another thread.

The browser tests drive Chromium synchronously (Playwright's sync API), so the servers run
on their own event loop in a background thread, as real servers would.
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

API_KEY = "console-key"


class LiveServers:
    """``api``: the service's base URL; ``upstream``: the fake XYZ server's."""

    def __init__(self, data_dir: Path, renderer: GroundTruthRenderer) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self.data_dir = data_dir
        self.renderer = renderer

    def __enter__(self) -> LiveServers:
        self.thread.start()
        self.upstream = self.call(self._serve(xyz_app(self.renderer)))
        settings = load_settings(
            env={},
            data_dir=self.data_dir,
            api_keys=(API_KEY,),
            allowed_networks=("127.0.0.0/8",),
            executor_workers=2,
            upstream_timeout=5.0,
            upstream_retries=0,
        )
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
