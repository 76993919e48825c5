"""Per-server protection (SPEC §8): a concurrency cap, a request rate and a circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from streaming.errors import SourceUnavailable


class CircuitBreaker:
    """Fails fast after ``threshold`` failures in a row, for ``cooldown`` seconds.

    After the cooldown one request goes through (half-open): success closes the
    circuit, failure opens it again. A down upstream then costs one request per
    cooldown instead of a timeout per request.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    def check(self) -> None:
        """Raise :class:`SourceUnavailable` while the circuit is open."""
        if self.opened_at is None:
            return
        left = self.opened_at + self.cooldown - self.clock()
        if left > 0:
            raise SourceUnavailable(
                f"the upstream failed {self.failures} times in a row; "
                f"not asking it again for {left:.0f} s",
                hint="the server looks down; cached data is still served where there is some",
            )
        self.opened_at = None  # half-open: let this request try

    def record(self, ok: bool) -> None:
        """Count a success (closes the circuit) or a failure (may open it)."""
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()


class ServerLimits:
    """A server's concurrency cap, request rate and breaker, shared by all its sources."""

    def __init__(
        self,
        max_concurrency: int,
        rate_limit: float | None,
        breaker: CircuitBreaker,
    ) -> None:
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.rate = AsyncLimiter(rate_limit, 1.0) if rate_limit else None
        self.breaker = breaker

    async def __aenter__(self) -> None:
        self.breaker.check()
        await self.semaphore.acquire()
        if self.rate is not None:
            try:
                await self.rate.acquire()
            except BaseException:
                self.semaphore.release()
                raise

    async def __aexit__(self, *exc: object) -> None:
        self.semaphore.release()
