"""The per-server circuit breaker."""

from __future__ import annotations

import pytest
from aiohttp import web

from proxy.net.client import UpstreamClient
from proxy.net.limits import CircuitBreaker
from proxy.net.retry import RetryPolicy
from proxy.net.safety import AddressPolicy
from proxy.upstream.base import UpstreamContext
from proxy.upstream.registry import parse_config
from proxy.upstream.xyz import XYZSource
from streaming.errors import SourceUnavailable
from streaming.types import TileIndex

HITS = web.AppKey("hits", list)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_and_half_opens_after_the_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.record(ok=False)
        breaker.check()  # still closed
    breaker.record(ok=False)
    with pytest.raises(SourceUnavailable, match="3 times in a row"):
        breaker.check()
    clock.now += 31
    breaker.check()  # half-open: one try goes through
    breaker.record(ok=False)
    with pytest.raises(SourceUnavailable):
        breaker.check()
    clock.now += 31
    breaker.check()
    breaker.record(ok=True)
    breaker.record(ok=False)
    breaker.check()  # a success reset the count


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
    try:
        for source in (XYZSource(config, ctx), XYZSource(config, ctx)):
            with pytest.raises(SourceUnavailable, match="HTTP 503"):
                await source.fetch_tile(TileIndex(0, 0, 1))
        with pytest.raises(SourceUnavailable, match="in a row"):
            await XYZSource(config, ctx).fetch_tile(TileIndex(1, 0, 1))
        assert len(app[HITS]) == 2
    finally:
        await client.close()
