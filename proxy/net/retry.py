"""When and how long to wait before trying an upstream request again (SPEC §8)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import attrs

# Transport failures worth another try: the peer dropped an established connection.
# A refused connection (ClientConnectorError) is not retried: the server is not there.
RESET_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)
IDEMPOTENT = frozenset({"GET", "HEAD"})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Retries of idempotent requests on 429, 5xx and connection resets.

    Delays grow exponentially from ``backoff`` with full jitter (so many clients
    retrying at once spread out), unless the server sends ``Retry-After``; every
    delay is capped at ``max_delay``.
    """

    retries: int = 2
    backoff: float = 0.25
    max_delay: float = 10.0
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def should_retry_status(self, method: str, status: int, attempt: int) -> bool:
        """True when a response with ``status`` deserves another try."""
        return method in IDEMPOTENT and status in self.statuses and attempt < self.retries

    def should_retry_error(self, method: str, error: BaseException, attempt: int) -> bool:
        """True when a transport error (the cause of a source error) deserves another try."""
        reset = isinstance(error, RESET_ERRORS) or (
            isinstance(error, aiohttp.ClientOSError)
            and not isinstance(error, aiohttp.ClientConnectorError)
        )
        return method in IDEMPOTENT and reset and attempt < self.retries

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        asked = parse_retry_after(retry_after) if retry_after else None
        if asked is not None:
            return min(asked, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.backoff * 2**attempt))


def parse_retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date); None if invalid."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
