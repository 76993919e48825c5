"""The service under test in the reads benchmark: its own process, or this process's loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from proxy.config import ENV_PREFIX, load_settings
from proxy.workers import serving_app

API_KEY = "bench-key"


class Service:
    """The service under test: ``imagery-proxy serve`` in its own process (``process``), as a
    detector's client never shares its event loop, or an app on this process's loop
    (``inline``: the figures before round 5, where the client's work ran on that loop).
    """

    def __init__(self, tmp: Path, mode: str) -> None:
        self.tmp, self.mode = tmp, mode
        self.pid = os.getpid()
        self.runner: web.AppRunner | None = None
        self.child: subprocess.Popen[bytes] | None = None

    async def start(self) -> str:
        settings = {
            "api_keys": API_KEY,
            "allowed_networks": "127.0.0.0/8",
            "max_read_requests": "1024",
            "data_dir": str(self.tmp / "data"),
        }
        if self.mode == "inline":
            self.runner = web.AppRunner(
                serving_app(load_settings(env={}, **settings)), access_log=None
            )
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        with socket.socket() as probe:  # a free port (the child binds it a moment later)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, **{f"{ENV_PREFIX}{k.upper()}": v for k, v in settings.items()}}
        command = [sys.executable, "-m", "proxy.cli", "serve", "--host", "127.0.0.1"]
        self.child = subprocess.Popen([*command, "--port", str(port)], env=env)
        self.pid = self.child.pid
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + "/health") as resp:
                        if resp.status == 200:
                            return base
                await asyncio.sleep(0.1)
        raise RuntimeError("the service did not start within 30 s")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.child is not None:
            self.child.terminate()
            self.child.wait(10)
