"""Per-server protection (SPEC §8): a concurrency cap, a request rate and a circuit breaker."""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiolimiter import AsyncLimiter

from streaming.errors import SourceUnavailable


class CircuitBreaker:
    """Fails fast after ``threshold`` failures in a row, for ``cooldown`` seconds.

    After the cooldown the circuit is half-open: exactly one request (the trial) goes
    through while every other fails fast. The trial's success closes the circuit, its
    failure opens it for another cooldown. A down upstream then costs one request per
    cooldown instead of a timeout per request.

    The trial belongs to an ``owner`` (the asyncio task making it): when that request ends
    without a verdict (cancelled, or an error that says nothing of the upstream), :meth:`release`
    hands the trial to the next caller instead of leaving the circuit half-open for good.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial: object | None = None  # owner of the half-open trial in flight

    def check(self) -> None:
        """Raise :class:`SourceUnavailable` unless a request could go through now."""
        if self.opened_at is None:
            return
        if self.trial is not None:
            raise SourceUnavailable(
                f"the upstream failed {self.failures} times in a row; "
                "one trial request is testing it now",
                hint="the server looks down; cached data is still served where there is some",
            )
        left = self.opened_at + self.cooldown - self.clock()
        if left > 0:
            raise SourceUnavailable(
                f"the upstream failed {self.failures} times in a row; "
                f"not asking it again for {left:.0f} s",
                hint="the server looks down; cached data is still served where there is some",
            )

    def admit(self, owner: object) -> None:
        """Let ``owner``'s request through, or raise; past the cooldown it becomes the trial."""
        self.check()
        if self.opened_at is not None:
            self.trial = owner

    def record(self, ok: bool) -> None:
        """Count a success (closes the circuit) or a failure (may open it again)."""
        self.trial = None
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()

    def release(self, owner: object) -> None:
        """``owner``'s request ended; a trial that left no verdict goes to the next caller."""
        if self.trial is owner:
            self.trial = None


# Set while a job's cell runs: its upstream requests take a job slot first (ServerLimits).
JOB_TRAFFIC: contextvars.ContextVar[bool] = contextvars.ContextVar("JOB_TRAFFIC", default=False)


@contextmanager
def job_traffic() -> Iterator[None]:
    """Count what runs inside as a job's traffic, held to the servers' job share."""
    token = JOB_TRAFFIC.set(True)
    try:
        yield
    finally:
        JOB_TRAFFIC.reset(token)


def job_slots(max_concurrency: int, share: float) -> int:
    """The requests jobs may have in flight at once: ``floor(share * cap)``, at least 1."""
    return max(1, min(max_concurrency, math.floor(share * max_concurrency)))


class ServerLimits:
    """A server's concurrency cap, request rate and breaker, shared by all its sources.

    ``async with limits:`` wraps one upstream request, which calls ``limits.breaker.record``
    with its outcome before leaving the block. A request of a job (:data:`JOB_TRAFFIC`)
    first takes one of the ``job_slots``, a share of the cap, so map clients and detector
    reads always keep the rest of it.
    """

    def __init__(
        self,
        max_concurrency: int,
        rate_limit: float | None,
        breaker: CircuitBreaker,
        max_wait: float = 30.0,
        job_share: float = 1.0,
    ) -> None:
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.job_slots = job_slots(max_concurrency, job_share)
        self.job_semaphore = asyncio.Semaphore(self.job_slots)
        self.rate = rate_limiter(rate_limit) if rate_limit else None
        self.rate_limit = rate_limit
        self.breaker = breaker
        self.max_wait = max_wait

    async def __aenter__(self) -> None:
        self.breaker.check()  # fail fast without queueing
        job = JOB_TRAFFIC.get()
        if job:
            await self.job_semaphore.acquire()
        try:
            await self.semaphore.acquire()
        except BaseException:
            if job:
                self.job_semaphore.release()
            raise
        try:
            if self.rate is not None:
                await self._rate_slot()
            # Again after the wait: requests queued behind a hanging server fail fast
            # once the breaker opened, and only a request about to be sent is the trial.
            self.breaker.admit(asyncio.current_task())
        except BaseException:
            self._release(job)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.breaker.release(asyncio.current_task())
        self._release(JOB_TRAFFIC.get())

    def _release(self, job: bool) -> None:
        self.semaphore.release()
        if job:
            self.job_semaphore.release()

    async def _rate_slot(self) -> None:
        # A slow rate (0.01/s) would hold a request for minutes: past the upstream
        # timeout the caller is told so at once instead.
        assert self.rate is not None
        try:
            await asyncio.wait_for(self.rate.acquire(), self.max_wait)
        except TimeoutError:
            raise SourceUnavailable(
                f"the server's rate limit ({self.rate_limit:g} requests/s) allows no request "
                f"within {self.max_wait:g} s",
                hint="wait, or raise the server's rate_limit",
            ) from None


def rate_limiter(rate: float) -> AsyncLimiter:
    """A limiter of ``rate`` requests per second; below 1/s, one request per ``1/rate`` s.

    ``AsyncLimiter(0.5, 1.0)`` holds half a request and refuses every acquire, so slow
    rates are expressed as one request per longer period instead.
    """
    if rate >= 1:
        return AsyncLimiter(rate, 1.0)
    return AsyncLimiter(1, 1.0 / rate)
