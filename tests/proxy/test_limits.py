"""The per-server circuit breaker."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from proxy.net.client import UpstreamClient
from proxy.net.limits import CircuitBreaker, ServerLimits
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy
from proxy.upstream.base import UpstreamContext
from proxy.upstream.registry import parse_config
from proxy.upstream.xyz import XYZSource
from streaming.errors import SourceUnavailable
from streaming.types import TileIndex

HITS = web.AppKey("hits", list)
CALLERS = 50


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_and_half_opens_after_the_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.record(ok=False)
        breaker.admit("a")  # still closed
    breaker.record(ok=False)
    with pytest.raises(SourceUnavailable, match="3 times in a row"):
        breaker.admit("a")
    clock.now += 31
    breaker.admit("trial")  # half-open: this one goes through ...
    with pytest.raises(SourceUnavailable, match="trial request"):
        breaker.admit("other")  # ... and no other
    breaker.record(ok=False)
    with pytest.raises(SourceUnavailable, match="not asking it again for 30 s"):
        breaker.admit("other")
    clock.now += 31
    breaker.admit("trial")
    breaker.record(ok=True)
    breaker.record(ok=False)
    breaker.admit("a")  # a success reset the count


class Upstream:
    """A fake upstream call inside ``async with limits``, held until ``gate`` opens.

    It reports its outcome to the breaker as ``ServerConnection.get`` does; ``fail_with``
    makes it raise an error that says nothing of the upstream (no verdict).
    """

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.hits = 0
        self.gate = asyncio.Event()
        self.ok = False
        self.fail_with: Exception | None = None

    async def call(self) -> None:
        async with self.limits:
            self.hits += 1
            await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            self.limits.breaker.record(ok=self.ok)

    def callers(self, n: int = CALLERS) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.call()) for _ in range(n)]


async def settled(tasks: list[asyncio.Task[None]], count: int) -> list[BaseException | None]:
    """Wait until ``count`` tasks are done (the rest wait at the gate); their outcomes."""
    async with asyncio.timeout(5):  # a guard against a hang, never reached when passing
        while sum(t.done() for t in tasks) < count:
            pending = [t for t in tasks if not t.done()]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    return [t.exception() for t in tasks if t.done() and not t.cancelled()]


async def let_tasks_run() -> None:
    """Let every ready task run until it blocks: a zero yield to the loop, not a wait."""
    await asyncio.sleep(0)


def opened(threshold: int = 3, cooldown: float = 30) -> tuple[Upstream, Clock]:
    """An upstream behind a breaker that just opened, and the breaker's clock."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=threshold, cooldown=cooldown, clock=clock)
    for _ in range(threshold):
        breaker.record(ok=False)
    return Upstream(ServerLimits(CALLERS, None, breaker)), clock


def fail_fast(outcomes: list[BaseException | None], match: str) -> int:
    """How many outcomes are a fast :class:`SourceUnavailable` matching ``match``."""
    return sum(isinstance(e, SourceUnavailable) and match in e.message for e in outcomes)


async def test_half_open_lets_one_of_fifty_callers_through_then_closes_on_success():
    upstream, clock = opened()
    assert fail_fast(await settled(upstream.callers(), CALLERS), "not asking") == CALLERS
    assert upstream.hits == 0

    clock.now += 31
    tasks = upstream.callers()
    outcomes = await settled(tasks, CALLERS - 1)
    assert upstream.hits == 1  # the trial, still in flight
    assert fail_fast(outcomes, "one trial request") == CALLERS - 1

    upstream.ok = True
    upstream.gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*upstream.callers())  # closed: every caller goes through
    assert upstream.hits == 1 + CALLERS


async def test_a_failed_trial_opens_for_another_cooldown():
    upstream, clock = opened()
    upstream.gate.set()  # the trial fails at once
    clock.now += 31
    outcomes = await settled(upstream.callers(), CALLERS)
    assert upstream.hits == 1 and fail_fast(outcomes, "in a row") == CALLERS - 1

    clock.now += 29
    assert fail_fast(await settled(upstream.callers(), CALLERS), "not asking") == CALLERS
    clock.now += 2
    await settled(upstream.callers(), CALLERS)
    assert upstream.hits == 2


@pytest.mark.parametrize("end", ["cancelled", "non-upstream error"])
async def test_a_trial_without_a_verdict_hands_the_trial_on(end):
    upstream, clock = opened()
    clock.now += 31
    tasks = upstream.callers()
    await settled(tasks, CALLERS - 1)
    (trial,) = [t for t in tasks if not t.done()]
    if end == "cancelled":
        trial.cancel()
    else:
        upstream.fail_with = ValueError("a bug, not the upstream")
        upstream.gate.set()
    await asyncio.gather(trial, return_exceptions=True)

    upstream.fail_with = None
    upstream.gate = asyncio.Event()
    tasks = upstream.callers()
    outcomes = await settled(tasks, CALLERS - 1)
    assert upstream.hits == 2  # not stuck half-open: the next caller is the trial ...
    assert fail_fast(outcomes, "one trial request") == CALLERS - 1  # ... and the only one
    upstream.gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_requests_queued_behind_a_hanging_server_fail_fast_once_it_opened():
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=Clock())
    upstream = Upstream(ServerLimits(1, None, breaker))
    hanging = upstream.callers(1)
    await let_tasks_run()
    queued = upstream.callers(10)  # the breaker is closed: they wait for the one slot
    await let_tasks_run()
    assert upstream.hits == 1 and not any(t.done() for t in queued)

    upstream.gate.set()  # the hanging request fails and opens the breaker
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    assert fail_fast(list(outcomes), "not asking") == 10
    assert upstream.hits == 1
    await hanging[0]


async def test_a_down_server_is_not_hammered(serve, executor):
    app = web.Application()
    app[HITS] = []

    async def down(request: web.Request) -> web.Response:
        app[HITS].append(request.path)
        return web.Response(status=503)

    app.router.add_get("/{z}/{x}/{y}.png", down)
    base = await serve(app)
    client = UpstreamClient(
        policy=AddressPolicy(["127.0.0.0/8"]),
        timeout=5,
        connect_timeout=2,
        max_bytes=1 << 20,
        retry=RetryPolicy(retries=0),
    )
    ctx = UpstreamContext(
        client=client,
        executor=executor,
        max_image_pixels=1 << 24,
        breaker_threshold=2,
        breaker_cooldown=60,
    )
    config = parse_config({"type": "xyz", "name": "d", "url": base + "/{z}/{x}/{y}.png"})
    clock = Clock()
    ctx.limits_for(config).breaker.clock = clock
    try:
        for source in (XYZSource(config, ctx), XYZSource(config, ctx)):
            with pytest.raises(SourceUnavailable, match="HTTP 503"):
                await source.fetch_tile(TileIndex(0, 0, 1))
        with pytest.raises(SourceUnavailable, match="in a row"):
            await XYZSource(config, ctx).fetch_tile(TileIndex(1, 0, 1))
        assert len(app[HITS]) == 2

        clock.now += 61  # half-open: of 50 concurrent reads, one asks the server
        sources = [XYZSource(config, ctx) for _ in range(CALLERS)]
        outcomes = await asyncio.gather(
            *(s.fetch_tile(TileIndex(i % 2, 0, 1)) for i, s in enumerate(sources)),
            return_exceptions=True,
        )
        assert len(app[HITS]) == 3
        assert fail_fast(list(outcomes), "HTTP 503") == 1
        assert fail_fast(list(outcomes), "in a row") == CALLERS - 1
    finally:
        await client.close()


async def test_a_slow_rate_limit_refuses_at_once_instead_of_holding_the_request() -> None:
    limits = ServerLimits(4, 0.01, CircuitBreaker(5, 30.0), max_wait=0.05)
    async with limits:  # the first slot is free
        pass
    with pytest.raises(SourceUnavailable, match=r"rate limit \(0.01 requests/s\)") as info:
        async with limits:
            pass
    assert "rate_limit" in (info.value.hint or "")
    assert limits.semaphore._value == 4  # the concurrency slot was given back
