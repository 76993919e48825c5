"""An access log that never writes a tile token or a key found in a URL.

aiohttp's default format logs the request line (``%r``) with its query, and map clients
send ``?token=`` with every tile. ``serve`` uses this logger instead.

Tiles answered from the cache (``X-Cache: HIT``, 200 or 304) are logged at DEBUG: a map
pans through hundreds of them a second, and one INFO line each cost a quarter to half of
the hit throughput (benchmarks/RESULTS.md). Misses, stale answers and errors, which
are what reaches or concerns the upstream, stay at INFO.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|key|api_key|apikey|access_token)=)[^&#]*")


def redact_query(path_qs: str) -> str:
    """``path_qs`` with the values of token- and key-like parameters masked."""
    return SECRET_PARAMS.sub(r"\1***", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: peer, method, path (secrets masked), status, bytes, time."""

    @property
    def enabled(self) -> bool:
        """Whether lines are written: with ``log_level`` above INFO, nothing is computed."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line (cache hits of tiles only at DEBUG)."""
        level = logging.INFO
        if response.status in (200, 304) and response.headers.get("X-Cache") == "HIT":
            if not self.logger.isEnabledFor(logging.DEBUG):
                return
            level = logging.DEBUG
        self.logger.log(
            level,
            '%s "%s %s" %s %s %.1fms',
            request.remote,
            request.method,
            redact_query(request.path_qs),
            response.status,
            response.body_length,
            time * 1000,
        )
