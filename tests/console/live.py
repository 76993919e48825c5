"""The console tests' API key (the servers: :class:`tests.live_servers.LiveServers`)."""

from __future__ import annotations

API_KEY = "console-key"
