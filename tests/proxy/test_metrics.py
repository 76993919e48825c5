"""GET /metrics: upstream figures by server as requests are served, auth, cache events."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from proxy.cache.tiles import CacheKey, Fresh, NoData, NotModified, TileCache
from proxy.config import load_settings
from proxy.metrics import SERVER, Metrics, server_scope
from streaming.errors import SourceUnavailable
from tests.conftest import API_KEY
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.upstreams.xyz import HITS, xyz_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 64}
P = "imagery_proxy_"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def scrape(api) -> str:
    resp = await api.get("/metrics")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/plain"
    return await resp.text()


async def add_server(api, url: str) -> str:
    resp = await api.post("/servers", json={"type": "xyz", "name": "m", "url": url})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def test_upstream_figures_move_as_a_saved_server_is_tested(api, serve, renderer):
    upstream = xyz_app(renderer)
    base = await serve(upstream)
    server_id = await add_server(api, base + "/a/tiles/{z}/{x}/{y}.png")
    before = await scrape(api)
    assert sample(before, P + "upstream_requests_total", server=server_id) == 0

    sent = 0
    for _ in range(2):
        resp = await api.post(f"/servers/{server_id}/test", json=PLACE)
        assert resp.status == 200, await resp.text()
        sent += (await resp.json())["diagnostics"]["upstream_requests"]
    assert sent == len(upstream[HITS]) > 0

    text = await scrape(api)
    ok = sample(text, P + "upstream_requests_total", server=server_id, code="200")
    assert ok == sent
    latency = P + "upstream_request_duration_seconds"
    assert sample(text, latency + "_count", server=server_id) == sent
    assert sample(text, latency + "_sum", server=server_id) > 0
    assert sample(text, latency + "_bucket", server=server_id, le="+Inf") == sent
    assert sample(text, P + "upstream_errors_total", server=server_id) == 0
    # The child exists (it went to 1 during each request) and is back to 0.
    assert f'{P}upstream_in_flight{{server="{server_id}"}} 0.0' in text
    assert sample(text, P + "upstream_requests_total", server="unsaved") == 0


async def test_unsaved_configs_count_as_unsaved(api, serve, renderer):
    base = await serve(xyz_app(renderer))
    server = {"type": "xyz", "name": "u", "url": base + "/a/tiles/{z}/{x}/{y}.png"}
    resp = await api.post("/servers/test", json={"server": server, **PLACE})
    assert resp.status == 200, await resp.text()
    sent = (await resp.json())["diagnostics"]["upstream_requests"]
    text = await scrape(api)
    assert sample(text, P + "upstream_requests_total", server="unsaved", code="200") == sent > 0


async def test_refused_connections_count_as_errors(api):
    # Port 9 (discard) is closed on loopback: the connection is refused.
    server_id = await add_server(api, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    resp = await api.post(f"/servers/{server_id}/test", json=PLACE)
    assert resp.status == 503, await resp.text()
    tries = (await resp.json())["diagnostics"]["upstream_requests"]
    assert tries >= 1
    text = await scrape(api)
    errors = sample(
        text, P + "upstream_errors_total", server=server_id, error="upstream_unavailable"
    )
    assert errors == tries
    assert sample(text, P + "upstream_requests_total", server=server_id, code="error") == tries
    assert f'{P}upstream_in_flight{{server="{server_id}"}} 0.0' in text


async def test_each_retry_counts_with_its_status(api, serve, renderer):
    upstream = xyz_app(renderer)
    refused: list[str] = []

    @web.middleware
    async def busy_once(request, handler):
        if not refused:  # the first request: busy, come back at once
            refused.append(request.path)
            return web.Response(status=503, headers={"Retry-After": "0"})
        return await handler(request)

    upstream.middlewares.append(busy_once)
    server_id = await add_server(api, await serve(upstream) + "/a/tiles/{z}/{x}/{y}.png")
    resp = await api.post(f"/servers/{server_id}/test", json=PLACE)
    assert resp.status == 200, await resp.text()
    sent = (await resp.json())["diagnostics"]["upstream_requests"]
    text = await scrape(api)
    assert sample(text, P + "upstream_requests_total", server=server_id, code="503") == 1
    assert sample(text, P + "upstream_requests_total", server=server_id, code="200") == sent - 1
    assert sample(text, P + "upstream_request_duration_seconds_count", server=server_id) == sent


async def test_metrics_need_the_api_key_by_default(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/metrics")).status == 401
    resp = await client.get("/metrics", headers={"X-API-Key": API_KEY})
    assert resp.status == 200
    assert f"{P}workers 1.0" in await resp.text()


async def test_metrics_public_opens_metrics_only(aiohttp_client, settings):
    client = await aiohttp_client(create_app(attrs.evolve(settings, metrics_public=True)))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    assert (await client.get("/servers")).status == 401
    assert (await client.get("/metrics/")).status in (401, 404)  # no prefix match


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("off", False)])
def test_metrics_public_reads_from_the_environment(raw, expected):
    env = {"IMAGERY_PROXY_METRICS_PUBLIC": raw, "IMAGERY_PROXY_WORKERS": "3"}
    settings = load_settings(env=env)
    assert settings.metrics_public is expected and settings.workers == 3


def test_a_bad_boolean_is_an_error():
    with pytest.raises(ValueError, match="boolean"):
        load_settings(env={"IMAGERY_PROXY_METRICS_PUBLIC": "maybe"})


# -- the cache's events and sizes ---------------------------------------------------------

KEY = CacheKey("cd" + "0" * 62, "tile", 3, 1, 2)
TILE = Fresh(b"x" * 1000, "image/png", upstream_etag='"e1"')


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def counts(metrics: Metrics, server: str) -> dict[str, float]:
    text = metrics.expose().decode()
    names = ("hits", "misses", "revalidated", "stale", "negative", "single_flight_joins")
    return {n: sample(text, f"{P}cache_{n}_total", server=server) for n in names}


async def test_cache_events_are_counted_by_server(tmp_path, executor):
    metrics, clock = Metrics(), Clock()
    cache = TileCache(tmp_path / "cache", executor=executor, events=metrics.cache, clock=clock)
    await cache.start()
    gate = asyncio.Event()

    async def slow(validators):
        await gate.wait()
        return TILE

    def answer(outcome):
        async def fetch(validators):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        return fetch

    with server_scope("s1"):
        # Three callers of one cold tile: one miss, two joins.
        waiting = [asyncio.create_task(cache.get_or_fetch(KEY, slow, ttl=60)) for _ in range(3)]
        await asyncio.sleep(0)  # the tasks start (and join) in this context, as s1
        gate.set()
        await asyncio.gather(*waiting)
        await cache.get_or_fetch(KEY, answer(TILE), ttl=60)  # hit
        clock.now += 120
        await cache.get_or_fetch(KEY, answer(NotModified()), ttl=60)  # miss + revalidated
        clock.now += 120
        await cache.get_or_fetch(KEY, answer(SourceUnavailable("down")), ttl=60)  # stale
    with server_scope("s2"):
        empty = CacheKey(KEY.fingerprint, "tile", 3, 1, 3)
        await cache.get_or_fetch(empty, answer(NoData()), ttl=60)  # miss
        await cache.get_or_fetch(empty, answer(TILE), ttl=60)  # negative
    assert SERVER.get() == "unsaved"

    assert counts(metrics, "s1") == {
        "hits": 1,  # a 304 answers HIT too, but counts as revalidated
        "misses": 3,
        "revalidated": 1,
        "stale": 1,
        "negative": 0,
        "single_flight_joins": 2,
    }
    assert counts(metrics, "s2") == {
        "hits": 0,
        "misses": 1,
        "revalidated": 0,
        "stale": 0,
        "negative": 1,
        "single_flight_joins": 0,
    }
    await cache.close()


async def test_cache_sizes_are_read_at_scrape_time(tmp_path, executor):
    metrics = Metrics()
    cache = TileCache(tmp_path / "cache", executor=executor)
    await cache.start()
    metrics.watch_cache(cache)
    for y in range(3):
        key = CacheKey(KEY.fingerprint, "tile", 3, 1, y)
        await cache.put(key, cache.entry(b"y" * 2000, "image/png", ttl=60))
    metrics.refresh()
    text = metrics.expose().decode()
    assert sample(text, P + "cache_memory_entries") == 3
    assert sample(text, P + "cache_memory_bytes") == cache.memory.bytes > 6000
    assert sample(text, P + "cache_disk_bytes") == cache.disk.bytes > 6000
    await cache.close()
