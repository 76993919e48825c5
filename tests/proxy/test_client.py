"""The upstream client: retries with backoff and Retry-After, redirects, body limit, redaction."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from proxy.errors import BlockedAddress
from proxy.net.client import REQUEST_LOG, UpstreamClient
from proxy.net.redact import redact_url
from proxy.net.retry import RetryPolicy, parse_retry_after
from proxy.net.safety import AddressPolicy
from streaming.errors import SourceBadResponse, SourceUnavailable

COUNTS = web.AppKey("counts", dict)


def count(request: web.Request, name: str) -> int:
    counts = request.app[COUNTS]
    counts[name] = counts.get(name, 0) + 1
    return counts[name]


async def flaky(request: web.Request) -> web.Response:
    if count(request, "flaky") <= 2:
        return web.Response(status=503, text="busy")
    return web.Response(text="ok")


async def limited(request: web.Request) -> web.Response:
    if count(request, "limited") == 1:
        return web.Response(status=429, headers={"Retry-After": "1"})
    return web.Response(text="ok")


async def down(request: web.Request) -> web.Response:
    count(request, "down")
    return web.Response(status=502)


async def reset(request: web.Request) -> web.StreamResponse:
    if count(request, "reset") == 1:
        assert request.transport is not None
        request.transport.close()  # drop the connection mid-request
    return web.Response(text="ok")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 5000)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def bomb(request: web.Request) -> web.Response:
    # 40 bytes on the wire, 100 000 once inflated: Content-Length alone says nothing.
    body = gzip.compress(b"x" * 100_000)
    return web.Response(body=body, headers={"Content-Encoding": "gzip"})


def flaky_app() -> web.Application:
    app = web.Application()
    app[COUNTS] = {}
    for handler in (flaky, limited, down, reset, redirect, big, ok, bomb):
        app.router.add_route("*", f"/{handler.__name__}", handler)
    return app


@pytest.fixture
def log() -> Iterator[list]:
    records: list = []
    token = REQUEST_LOG.set(records)
    yield records
    REQUEST_LOG.reset(token)


@pytest.fixture
async def client():
    c = UpstreamClient(
        policy=AddressPolicy(["127.0.0.0/8"]),
        timeout=5,
        connect_timeout=2,
        max_bytes=4096,
        retry=RetryPolicy(retries=2, backoff=0.01),
    )
    yield c
    await c.close()


async def test_5xx_is_retried_with_backoff(serve, client, log):
    app = flaky_app()
    base = await serve(app)
    resp = await client.request("GET", base + "/flaky")
    assert resp.status == 200 and app[COUNTS]["flaky"] == 3
    assert [r.status for r in log] == [503, 503, 200]


async def test_retries_stop_after_the_limit(serve, client):
    app = flaky_app()
    base = await serve(app)
    resp = await client.request("GET", base + "/down")
    assert resp.status == 502 and app[COUNTS]["down"] == 3


async def test_retry_after_is_honoured(serve, client):
    app = flaky_app()
    base = await serve(app)
    started = time.perf_counter()
    resp = await client.request("GET", base + "/limited")
    assert resp.status == 200
    assert time.perf_counter() - started >= 0.95  # backoff alone would be 10 ms


async def test_connection_reset_is_retried(serve, client):
    app = flaky_app()
    base = await serve(app)
    resp = await client.request("GET", base + "/reset")
    assert resp.status == 200 and app[COUNTS]["reset"] == 2


async def test_post_is_never_retried(serve, client):
    app = flaky_app()
    base = await serve(app)
    resp = await client.request("POST", base + "/flaky", data={"a": "b"})
    assert resp.status == 503 and app[COUNTS]["flaky"] == 1


async def test_refused_connection_fails_at_once(client):
    started = time.perf_counter()
    with pytest.raises(SourceUnavailable):
        await client.request("GET", "http://127.0.0.1:9/x")
    assert time.perf_counter() - started < 1


async def test_redirects_are_followed_and_each_hop_checked(serve, client, log):
    base = await serve(flaky_app())
    resp = await client.request("GET", f"{base}/redirect", params={"to": f"{base}/ok"})
    assert resp.status == 200 and resp.body == b"ok" and resp.url.endswith("/ok")
    assert [r.status for r in log] == [302, 200]
    strict = UpstreamClient(
        policy=AddressPolicy(["127.0.0.1/32"]), timeout=5, connect_timeout=2, max_bytes=1 << 20
    )
    try:
        # the first hop is allowed, the redirect to a metadata address is not
        with pytest.raises(BlockedAddress):
            await strict.request(
                "GET", f"{base}/redirect", params={"to": "http://169.254.169.254/latest/"}
            )
    finally:
        await strict.close()


async def test_body_past_the_limit_is_refused(serve, client):
    base = await serve(flaky_app())
    with pytest.raises(SourceBadResponse, match="4096"):
        await client.request("GET", base + "/big")


async def test_a_compressed_body_is_bounded_by_its_inflated_size(serve, client):
    base = await serve(flaky_app())
    with pytest.raises(SourceBadResponse, match="past the limit of 4096"):
        await client.request("GET", base + "/bomb")


async def test_errors_and_diagnostics_show_the_url_redacted(serve, client, log):
    with pytest.raises(SourceUnavailable) as failed:
        await client.request("GET", "http://127.0.0.1:9/x?token=s3cr3t&k=v", secrets=["v0v0v"])
    assert "s3cr3t" not in str(failed.value) and "token=***" in str(failed.value)
    base = await serve(flaky_app())
    await client.request("GET", f"{base}/ok", params={"apikey": "abc123", "q": "v0v0v"})
    await client.request("GET", f"{base}/ok", params={"q": "v0v0v"}, secrets=["v0v0v"])
    shown = [r.url for r in log]
    assert all("s3cr3t" not in u for u in shown) and "abc123" not in shown[-2]
    assert "apikey=***" in shown[-2] and "q=***" in shown[-1]


async def test_errors_show_the_url_redacted_without_diagnostics(client):
    assert REQUEST_LOG.get() is None  # nothing asked for diagnostics
    with pytest.raises(SourceUnavailable) as failed:
        await client.request("GET", "http://127.0.0.1:9/x?key=s3cr3t&k=v0v0v", secrets=["v0v0v"])
    assert "s3cr3t" not in str(failed.value) and "v0v0v" not in str(failed.value)
    assert "127.0.0.1:9/x" in str(failed.value)


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert RetryPolicy(max_delay=2).delay(0, "120") == 2


def test_redact_url():
    url = "https://user:pw@h/t/1/2/3.png?apikey=abc123&layer=x&token=zz&k=s3cr3t"
    shown = redact_url(url, ["s3cr3t"])
    assert "pw" not in shown and "abc123" not in shown and "zz" not in shown
    assert "s3cr3t" not in shown and "layer=x" in shown and "/1/2/3.png" in shown
