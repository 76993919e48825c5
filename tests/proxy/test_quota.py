"""Upstream quotas through the API, against a counting loopback XYZ upstream.

Every upstream request the fake receives is in ``app[PATHS]``; the quota must let exactly
its limit through, answer 429 with the reset time past it, keep serving cached tiles,
and keep its count across a restart.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from proxy.app import create_app
from proxy.keys import SERVICES
from tests.conftest import API_KEY
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.proxy.image_helpers import AOI
from tests.proxy.tile_helpers import add_server, centre_tile, decode, tile_grid
from tests.upstreams.wms import REQUESTS as WMS_REQUESTS
from tests.upstreams.wms import wms_app
from tests.upstreams.xyz import PATHS, xyz_app

RES = 4.777314267823516 * 0.6883  # about zoom-15 pixels on the ground


@pytest.fixture
async def upstream(serve, renderer):
    app = xyz_app(renderer)
    return app, await serve(app)


async def quota_server(api, base: str, **quota) -> str:
    config = {
        "type": "xyz",
        "url": base + "/a/tiles/{z}/{x}/{y}.png",
        "resolution": RES,
        "quota": {"period": "day", **quota},
    }
    return await add_server(api, config)


def fetched(app) -> int:
    return len(app[PATHS])


def next_midnight() -> float:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86_400


def tiles_around(z: int, count: int) -> list[tuple[int, int, int]]:
    t = centre_tile(z)
    return [(z, t.x + i % 4, t.y + i // 4) for i in range(count)]


async def test_n_requests_pass_across_concurrent_tiles_and_reads_then_429(
    api, upstream, ground_truth
):
    app, base = upstream
    n = 10
    sid = await quota_server(api, base, requests=n)
    resp = await api.post("/imports", json={"server_id": sid, "name": "q", "aois": AOI})
    assert resp.status == 201, await resp.text()
    image = (await resp.json())["id"]
    assert fetched(app) == 0  # an import asks nothing of an XYZ upstream
    tiles = [f"/servers/{sid}/tiles/{z}/{x}/{y}" for z, x, y in tiles_around(13, 8)]
    # 4 windows of zoom-15 pixels, 2 to 4 tiles each: 8 + about 12 tiles wanted, 10 allowed
    reads = [f"/images/{image}/window/{c},{r},200,200.png" for c in (0, 250) for r in (0, 450)]
    answers = await asyncio.gather(*(api.get(p) for p in tiles + reads))
    statuses = [a.status for a in answers]
    assert set(statuses) == {200, 429}, statuses  # no 502, and no read with holes
    assert fetched(app) == n  # exactly the quota reached the upstream
    for refused in (a for a in answers if a.status == 429):
        error = (await refused.json())["error"]
        assert error["code"] == "upstream_quota_exceeded"
        assert error["resets_at"] == next_midnight()
        assert f"{n}/{n} requests" in error["message"] and "raise" in error["hint"]
        assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    usage = (await (await api.get(f"/servers/{sid}")).json())["usage"]
    assert usage["requests"] == {"used": n, "limit": n, "remaining": 0}
    assert usage["resets_at"] == next_midnight() and usage["bytes"]["used"] > 0
    # what was fetched keeps being served, from the cache, and is right
    served = [p for p, a in zip(tiles, answers, strict=False) if a.status == 200]
    assert served, statuses
    again = await api.get(served[0])
    assert again.status == 200 and again.headers["X-Cache"] == "HIT"
    z, x, y = (int(v) for v in served[0].rsplit("/", 3)[1:])
    assert_pixels_match(decode(await again.read()), expected(ground_truth, tile_grid(z, x, y)))
    assert fetched(app) == n
    # a new tile is refused before it leaves
    t = centre_tile(10)
    refused = await api.get(f"/servers/{sid}/tiles/10/{t.x}/{t.y}")
    assert refused.status == 429 and fetched(app) == n


async def test_an_expired_tile_is_served_stale_when_the_quota_is_spent(api, upstream):
    app, base = upstream
    sid = await quota_server(api, base, requests=1)
    await api.patch(f"/servers/{sid}", json={"cache_ttl": 0})  # every hit revalidates
    t = centre_tile(14)
    first = await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    stale = await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert await stale.read() == await first.read()
    assert fetched(app) == 1


async def test_editing_the_quota_keeps_the_cache_and_the_count(api, upstream):
    app, base = upstream
    sid = await quota_server(api, base, requests=1)
    t = centre_tile(14)
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")).status == 200
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x + 1}/{t.y}")).status == 429
    resp = await api.patch(f"/servers/{sid}", json={"quota": {"requests": 2, "period": "day"}})
    assert resp.status == 200, await resp.text()
    hit = await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")
    assert hit.headers["X-Cache"] == "HIT"  # quota is not part of the pixel fingerprint
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x + 1}/{t.y}")).status == 200
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x + 2}/{t.y}")).status == 429
    assert fetched(app) == 2


async def test_a_restart_keeps_the_count(aiohttp_client, settings, upstream):
    app, base = upstream
    first = await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
    sid = await quota_server(first, base, requests=3)
    for z, x, y in tiles_around(12, 2):
        assert (await first.get(f"/servers/{sid}/tiles/{z}/{x}/{y}")).status == 200
    await first.close()
    second = await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
    usage = (await (await second.get(f"/servers/{sid}")).json())["usage"]
    assert usage["requests"]["used"] == 2
    paths = [f"/servers/{sid}/tiles/{z}/{x}/{y}" for z, x, y in tiles_around(11, 2)]
    assert [(await second.get(p)).status for p in paths] == [200, 429]
    assert fetched(app) == 3


async def test_test_connection_may_use_the_reserve(api, upstream):
    app, base = upstream
    sid = await quota_server(api, base, requests=1, reserve=4)
    t = centre_tile(14)
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")).status == 200
    assert (await api.get(f"/servers/{sid}/tiles/14/{t.x + 1}/{t.y}")).status == 429
    place = {"lat": CENTER_LAT, "lon": CENTER_LON, "size": 64}
    probe = await api.post(f"/servers/{sid}/test", json={**place, "resolution": 20})
    report = await probe.json()
    assert probe.status == 200, report
    used = 1 + report["diagnostics"]["upstream_requests"]
    assert 1 < used <= 5 and fetched(app) == used
    usage = (await (await api.get(f"/servers/{sid}")).json())["usage"]
    assert usage["requests"]["used"] == used
    # once the reserve is spent, test connection is refused too, and says when it resets
    for i in range(1, 5):  # a new place each time: new tiles
        elsewhere = {**place, "lat": CENTER_LAT + 0.01 * i}
        probe = await api.post(f"/servers/{sid}/test", json={**elsewhere, "resolution": 3})
        if probe.status != 200:
            break
    assert probe.status == 429
    assert (await probe.json())["error"]["code"] == "upstream_quota_exceeded"
    assert fetched(app) == 5


async def test_a_rolling_window_frees_requests_as_they_age(api, upstream):
    app, base = upstream
    sid = await quota_server(api, base, requests=2, period="rolling", window_seconds=60)
    quotas = api.server.app[SERVICES].quotas
    now = 1_000_000.0
    quotas.clock = lambda: now  # the quota's clock only: no real waiting
    paths = [f"/servers/{sid}/tiles/{z}/{x}/{y}" for z, x, y in tiles_around(14, 4)]
    assert (await api.get(paths[0])).status == 200
    now += 30
    assert (await api.get(paths[1])).status == 200
    refused = await api.get(paths[2])
    assert refused.status == 429
    # the first request (bucket 1 000 000 s) counts until its bucket leaves the window
    assert (await refused.json())["error"]["resets_at"] == 1_000_061.0
    now = 1_000_060.5
    assert (await api.get(paths[2])).status == 429  # 60.5 s: still inside the window
    now = 1_000_061.0
    assert (await api.get(paths[2])).status == 200
    assert (await api.get(paths[3])).status == 429
    assert fetched(app) == 3


async def test_plan_share_require_quota_and_the_estimate_of_a_full_read(api, upstream):
    app, base = upstream
    sid = await quota_server(api, base, requests=1000, bytes=10**9)
    ask = {"server_id": sid, "name": "q", "aois": AOI}
    plan = await (await api.post("/imports/plan", json=ask)).json()
    share = plan["quota"]
    assert share["requests"] == {
        "needed": plan["requests"],
        "used": 0,
        "limit": 1000,
        "remaining": 1000,
        "share": round(plan["requests"] / 1000, 4),
    }
    assert share["bytes"]["needed"] == plan["bytes"] and share["fits"] is True
    resp = await api.post("/imports", json={**ask, "require_quota": True})
    assert resp.status == 201, await resp.text()
    image = await resp.json()
    read = await api.get(f"/images/{image['id']}/window/0,0,{image['width']},{image['height']}.png")
    assert read.status == 200, await read.text()
    # the plan's estimate is what a full read of the image then costs (within 5 %)
    assert abs(fetched(app) - plan["requests"]) <= 0.05 * plan["requests"]
    tight = await quota_server(api, base, requests=plan["requests"] - 1)
    small = {**ask, "server_id": tight}
    share = (await (await api.post("/imports/plan", json=small)).json())["quota"]
    assert share["fits"] is False
    refused = await api.post("/imports", json={**small, "require_quota": True})
    assert refused.status == 409
    error = (await refused.json())["error"]
    assert error["code"] == "quota_insufficient" and "left" in error["message"]
    no_quota = await add_server(api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png"})
    plan = await (
        await api.post("/imports/plan", json={**ask, "server_id": no_quota, "resolution": RES})
    ).json()
    assert plan["quota"] is None


async def test_the_warning_is_logged_once_per_period(api, upstream, caplog):
    _, base = upstream
    sid = await quota_server(api, base, requests=5, warn_at=0.6)
    caplog.set_level(logging.WARNING, logger="proxy.quota.enforce")
    for z, x, y in tiles_around(12, 6):
        await api.get(f"/servers/{sid}/tiles/{z}/{x}/{y}")
    warnings = [r.getMessage() for r in caplog.records if r.name == "proxy.quota.enforce"]
    assert len(warnings) == 1 and f"server {sid} has used 3 of its 5 requests" in warnings[0]


async def test_usage_is_in_the_metrics_and_the_cli(api, upstream, settings, capsys):
    from proxy.cli import main

    app, base = upstream
    sid = await quota_server(api, base, requests=7)
    t = centre_tile(14)
    await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")
    text = await (await api.get("/metrics")).text()
    assert f'imagery_proxy_upstream_quota_used{{server="{sid}",unit="requests"}} 1.0' in text
    assert f'imagery_proxy_upstream_quota_limit{{server="{sid}",unit="requests"}} 7.0' in text
    cli = ["--data-dir", str(settings.data_dir), "servers", "usage"]
    assert await asyncio.to_thread(main, [*cli, sid]) == 0  # main runs a loop of its own
    out = capsys.readouterr().out
    assert sid in out and "1/7 (14 %)" in out
    assert await asyncio.to_thread(main, [*cli, "--json"]) == 0
    assert '"used": 1' in capsys.readouterr().out


async def test_a_deleted_server_forgets_its_counters(api, upstream):
    _, base = upstream
    sid = await quota_server(api, base, requests=3)
    t = centre_tile(14)
    await api.get(f"/servers/{sid}/tiles/14/{t.x}/{t.y}")
    store = api.server.app[SERVICES].quotas.store
    from proxy.quota.model import QuotaConfig
    from proxy.quota.periods import window

    w = window(QuotaConfig(requests=3, period="day"), datetime.now(UTC).timestamp())
    assert len(await store.usage(sid, w)) == 1
    assert (await api.delete(f"/servers/{sid}")).status == 204
    assert await store.usage(sid, w) == []


async def test_a_wms_server_counts_capabilities_and_getmaps_and_refuses_with_429(
    api, serve, renderer
):
    app = wms_app(renderer, max_size=(2048, 2048))
    base = await serve(app)
    config = {"type": "wms", "url": base + "/wms", "crs": "EPSG:3857"}
    sid = await add_server(api, {**config, "quota": {"requests": 2, "period": "day"}})
    t = centre_tile(15)
    first = await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")  # capabilities + a metatile
    assert first.status == 200, await first.text()
    assert len(app[WMS_REQUESTS]) == 2
    far = await api.get(f"/servers/{sid}/tiles/15/{t.x + 8}/{t.y + 8}")  # another metatile
    assert far.status == 429, await far.text()
    assert (await far.json())["error"]["code"] == "upstream_quota_exceeded"
    assert (await api.get(f"/servers/{sid}/tiles/15/{t.x}/{t.y}")).headers["X-Cache"] == "HIT"
    assert len(app[WMS_REQUESTS]) == 2


async def test_a_bytes_quota_counts_the_answers_and_refuses_once_reached(api, upstream):
    app, base = upstream
    paths = [f"/servers/{{sid}}/tiles/{z}/{x}/{y}" for z, x, y in tiles_around(15, 3)]
    # the same tiles through another folder label: another fingerprint, nothing shared
    probe_sid = await add_server(api, {"type": "xyz", "url": base + "/b/tiles/{z}/{x}/{y}.png"})
    sizes = [len(await (await api.get(p.format(sid=probe_sid))).read()) for p in paths[:2]]
    sid = await quota_server(api, base, bytes=sizes[0] + 1)  # reached by the first answer + 1
    assert (await api.get(paths[0].format(sid=sid))).status == 200
    usage = (await (await api.get(f"/servers/{sid}")).json())["usage"]
    assert usage["bytes"] == {"used": sizes[0], "limit": sizes[0] + 1, "remaining": 1}
    assert (await api.get(paths[1].format(sid=sid))).status == 200  # still under: admitted
    refused = await api.get(paths[2].format(sid=sid))
    assert refused.status == 429
    error = (await refused.json())["error"]
    assert f"{sum(sizes)}/{sizes[0] + 1} bytes" in error["message"]
    assert len(app[PATHS]) == 4  # 2 for the server without a quota, 2 admitted
