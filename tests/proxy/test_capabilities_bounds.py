"""Issue 9 item 3: capabilities documents are bounded in bytes, layers and parse time,
and the cache of parsed documents is bounded by bytes, not by count."""

from __future__ import annotations

import threading

import pytest
from aiohttp import web

from proxy.net.client import UpstreamClient
from proxy.net.safety import AddressPolicy
from proxy.schemas import WMSConfig
from proxy.upstream.base import CapabilitiesLimits, ServerConnection, UpstreamContext
from proxy.upstream.capabilities import cached_capabilities, fetch_xml
from streaming.errors import SourceBadResponse


def capabilities(layers: int, pad: int = 0) -> bytes:
    inner = "".join(f"<Layer><Name>l{i}</Name></Layer>" for i in range(layers))
    return f"<WMS_Capabilities><!--{'x' * pad}--><Layer>{inner}</Layer></WMS_Capabilities>".encode()


@pytest.fixture
async def upstream(serve):
    async def doc(request: web.Request) -> web.Response:
        q = request.query
        body = capabilities(int(q.get("layers", "1")), int(q.get("pad", "0")))
        return web.Response(body=body, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/wms", doc)
    return await serve(app) + "/wms"


@pytest.fixture
async def make_connection(executor):
    clients = []

    def make(url: str, **limits) -> ServerConnection:
        client = UpstreamClient(
            policy=AddressPolicy(["127.0.0.0/8"]), timeout=10, connect_timeout=5, max_bytes=1 << 24
        )
        clients.append(client)
        ctx = UpstreamContext(
            client=client,
            executor=executor,
            max_image_pixels=1 << 20,
            capabilities_limits=CapabilitiesLimits(**limits),
        )
        return ServerConnection(WMSConfig(type="wms", name="t", url=url), ctx)

    yield make
    for client in clients:
        await client.close()


async def test_a_document_past_the_byte_limit_is_refused(upstream, make_connection):
    conn = make_connection(upstream, max_bytes=10_000)
    assert await fetch_xml(conn, upstream, {"pad": "1000"})
    with pytest.raises(SourceBadResponse, match="past the limit of 10000 bytes"):
        await fetch_xml(conn, upstream, {"pad": "20000"})


async def test_a_document_past_the_layer_limit_is_refused(upstream, make_connection):
    conn = make_connection(upstream, max_layers=100)
    assert await fetch_xml(conn, upstream, {"layers": "99"})
    with pytest.raises(SourceBadResponse, match="lists 1001 layers, past the limit of 100") as e:
        await fetch_xml(conn, upstream, {"layers": "1000"})
    assert "capabilities_max_layers" in (e.value.hint or "")


async def test_a_slow_parse_is_given_up(upstream, make_connection):
    conn = make_connection(upstream, parse_timeout=0.05)
    release = threading.Event()

    def stuck(body: bytes) -> None:
        release.wait(5)  # a parse that never ends in time

    try:
        with pytest.raises(SourceBadResponse, match="took more than 0.05 s"):
            await cached_capabilities(conn, upstream, {}, stuck)
    finally:
        release.set()


async def test_the_cache_is_bounded_by_document_bytes(upstream, make_connection):
    conn = make_connection(upstream, cache_bytes=20_000)
    cache = conn.ctx.capabilities

    def parse(body: bytes) -> int:
        return len(body)

    for pad in (8_000, 9_000, 10_000):
        await cached_capabilities(conn, upstream, {"pad": str(pad)}, parse)
    assert cache.currsize <= 20_000 and len(cache) == 2  # the oldest made room
    await cached_capabilities(conn, upstream, {"pad": "50000"}, parse)  # larger than it all
    assert cache.currsize <= 20_000 and all(e.size < 50_000 for e in cache.values())
