"""Issue 9 items 6 and 7 at the network edge: credentials stay on their host, bad
addresses and broken redirects are clear errors (never a crash)."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from aiohttp import web
from yarl import URL

from proxy.errors import BlockedAddress
from proxy.net.client import UpstreamClient
from proxy.net.limits import rate_limiter
from proxy.net.safety import VERDICTS_KEPT, AddressPolicy, parse_host
from proxy.schemas import XYZConfig
from proxy.upstream.base import ServerConnection, UpstreamContext
from streaming.errors import SourceBadResponse, SourceUnavailable

SEEN = web.AppKey("seen", list)


def recorder(name: str) -> web.Application:
    """An upstream that records what reached it; ``/go?to=URL`` redirects there."""

    async def handle(request: web.Request) -> web.Response:
        request.app[SEEN].append(
            {"path": request.path, "query": dict(request.query), "headers": dict(request.headers)}
        )
        if request.path == "/go":
            raise web.HTTPFound(request.query["to"])
        return web.Response(text=name)

    app = web.Application()
    app[SEEN] = []
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def two_hosts(aiohttp_server):
    """Two upstreams on different hosts: 127.0.0.1 (configured) and 127.0.0.2 (other)."""
    home = await aiohttp_server(recorder("home"), host="127.0.0.1")
    other = await aiohttp_server(recorder("other"), host="127.0.0.2")
    return home, other


def connection(ctx: UpstreamContext, home, **extra) -> ServerConnection:
    config = XYZConfig(
        type="xyz",
        name="t",
        url=f"http://127.0.0.1:{home.port}/{{z}}/{{x}}/{{y}}.png",
        headers={"Authorization": "Bearer home-secret-1"},
        params={"apikey": "home-secret-2"},
        **extra,
    )
    return ServerConnection(config, ctx)


async def test_a_redirect_to_another_host_gets_no_credentials(upstream_ctx, two_hosts):
    home, other = two_hosts
    conn = connection(upstream_ctx, home)
    target = f"http://127.0.0.2:{other.port}/tile?x=1"
    resp = await conn.get(f"http://127.0.0.1:{home.port}/go", {"to": target})
    assert resp.body == b"other"
    [at_home] = home.app[SEEN]
    assert at_home["headers"]["Authorization"] == "Bearer home-secret-1"
    assert at_home["query"]["apikey"] == "home-secret-2"
    [elsewhere] = other.app[SEEN]
    assert "Authorization" not in elsewhere["headers"]
    assert elsewhere["query"] == {"x": "1"}


async def test_a_redirect_that_copies_the_secret_query_loses_it(upstream_ctx, two_hosts):
    home, other = two_hosts
    conn = connection(upstream_ctx, home)
    target = f"http://127.0.0.2:{other.port}/tile?apikey=home-secret-2&copy=home-secret-2&y=2"
    await conn.get(f"http://127.0.0.1:{home.port}/go", {"to": target})
    assert other.app[SEEN][0]["query"] == {"y": "2"}


async def test_an_online_resource_on_another_host_gets_no_credentials(upstream_ctx, two_hosts):
    home, other = two_hosts
    conn = connection(upstream_ctx, home)
    await conn.get(f"http://127.0.0.2:{other.port}/wms", {"REQUEST": "GetMap"})
    [seen] = other.app[SEEN]
    assert "Authorization" not in seen["headers"] and seen["query"] == {"REQUEST": "GetMap"}


async def test_credential_hosts_lets_them_through(upstream_ctx, two_hosts):
    home, other = two_hosts
    conn = connection(upstream_ctx, home, credential_hosts=["127.0.0.2"])
    await conn.get(f"http://127.0.0.2:{other.port}/wms")
    [seen] = other.app[SEEN]
    assert seen["headers"]["Authorization"] == "Bearer home-secret-1"
    assert seen["query"]["apikey"] == "home-secret-2"


async def test_a_subdomain_template_host_keeps_its_credentials(upstream_ctx, aiohttp_server):
    server = await aiohttp_server(recorder("home"), host="127.0.0.1")
    config = XYZConfig(
        type="xyz",
        name="t",
        url=f"http://{{s}}.localhost:{server.port}/{{z}}/{{x}}/{{y}}.png",
        subdomains=["a"],
        headers={"Authorization": "Bearer sub-secret"},
    )
    conn = ServerConnection(config, upstream_ctx)
    assert conn.scope.trusts(URL(f"http://a.localhost:{server.port}/1"))
    assert not conn.scope.trusts(URL("http://a.b.localhost/1"))
    assert not conn.scope.trusts(URL("http://localhost/1"))


@pytest.mark.parametrize(
    "location",
    ["http://[::1", "http://exa mple.com:99999/", "http://[zz]/", "http://h:999999/"],
)
async def test_a_malformed_redirect_is_a_bad_answer(upstream_ctx, serve, location, caplog):
    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    app = web.Application()
    app.router.add_get("/", bad)
    base = await serve(app)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceBadResponse) as exc:
        await upstream_ctx.client.request("GET", base + "/")
    assert "redirect" in exc.value.message or "request" in exc.value.message
    assert exc.value.hint
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "127.1",
        "0x7f.1",
        "0177.0.0.1",
        "017700000001",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254 (cloud metadata)
        "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
        "[::10.0.0.1]",  # IPv4-compatible
        "[::1]",
    ],
)
def test_numeric_and_embedded_ipv4_forms_are_judged_by_their_address(host):
    with pytest.raises(BlockedAddress):
        AddressPolicy().check(host)


@pytest.mark.parametrize("host", ["8.8.8.8", "[64:ff9b::808:808]", "[2002:808:808::]", "a.example"])
def test_public_forms_pass(host):
    AddressPolicy().check(host)


def test_parse_host_reads_what_the_resolver_reads():
    assert parse_host("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert parse_host("127.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_host("cafe") is None and parse_host("1.example") is None


async def test_a_numeric_host_url_is_refused_before_connecting(executor):
    client = UpstreamClient(policy=AddressPolicy(), timeout=5, connect_timeout=5, max_bytes=1000)
    try:
        for url in ("http://2130706433/", "http://127.1/", "http://[64:ff9b::7f00:1]/"):
            with pytest.raises(BlockedAddress):
                await client.request("GET", url)
    finally:
        await client.close()


async def test_control_characters_in_a_url_are_a_bad_request(upstream_ctx):
    for url in ("http://127.0.0.1/\r\nHost: evil", "http://127.0.0.1/a\x00b"):
        with pytest.raises(SourceBadResponse, match="control characters"):
            await upstream_ctx.client.request("GET", url)


async def test_a_body_cut_short_is_named_so(upstream_ctx, serve):
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        request.transport.close()  # type: ignore[union-attr]
        return resp

    app = web.Application()
    app.router.add_get("/", cut)
    base = await serve(app)
    with pytest.raises(SourceUnavailable, match="closed the connection mid-answer") as exc:
        await upstream_ctx.client.request("GET", base + "/")
    assert "cannot reach" not in exc.value.message and exc.value.hint


@pytest.mark.parametrize("rate", [0.01, 0.5, 1, 20])
async def test_slow_rates_still_admit_a_request(rate):
    limiter = rate_limiter(rate)
    await limiter.acquire()  # AsyncLimiter(0.5, 1) raised ValueError here


def test_a_remembered_verdict_holds_and_the_memory_is_bounded():
    policy = AddressPolicy(["10.0.0.0/8"])
    for _ in range(2):  # the second check answers from memory, the same way
        policy.check("10.1.2.3")
        with pytest.raises(BlockedAddress):
            policy.check("127.0.0.1")
        with pytest.raises(BlockedAddress):
            policy.check("[::ffff:127.0.0.1]")
    for i in range(3000):  # hosts come from untrusted URLs: memory never grows past the bound
        policy.check(f"8.8.{i // 256}.{i % 256}")
    assert len(policy._verdicts) <= VERDICTS_KEPT
    with pytest.raises(BlockedAddress):
        policy.check("127.0.0.1")
