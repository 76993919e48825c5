"""A saved server's source is opened once and reused until the server is edited or deleted."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from proxy.app import create_app
from proxy.keys import SERVICES
from tests.conftest import API_KEY
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.upstreams.wms import REQUESTS, wms_app

PLACE = {"lat": CENTER_LAT, "lon": CENTER_LON, "resolution": 10.0, "size": 64}


@pytest.fixture
async def api(aiohttp_client, settings):
    # No capabilities cache: only the opened-source cache can spare a GetCapabilities.
    uncached = attrs.evolve(settings, capabilities_ttl=0)
    return await aiohttp_client(create_app(uncached), headers={"X-API-Key": API_KEY})


def capabilities_requests(app) -> int:
    return sum(r.get("REQUEST", "").lower() == "getcapabilities" for r in app[REQUESTS])


async def test_saved_wms_reads_capabilities_once_until_edited(api, serve, renderer):
    upstream = wms_app(renderer)
    base = await serve(upstream)
    resp = await api.post("/servers", json={"type": "wms", "name": "w", "url": base + "/wms"})
    server_id = (await resp.json())["id"]

    for _ in range(2):
        resp = await api.post(f"/servers/{server_id}/test", json=PLACE)
        assert resp.status == 200, await resp.text()
    assert capabilities_requests(upstream) == 1

    resp = await api.patch(f"/servers/{server_id}", json={"name": "renamed"})
    assert resp.status == 200
    resp = await api.post(f"/servers/{server_id}/test", json=PLACE)
    assert resp.status == 200
    assert capabilities_requests(upstream) == 2

    sources = api.app[SERVICES].sources
    assert len(sources) == 1
    assert (await api.delete(f"/servers/{server_id}")).status == 204
    assert len(sources) == 0


async def test_unsaved_configs_are_not_kept(api, serve, renderer):
    upstream = wms_app(renderer)
    base = await serve(upstream)
    server = {"type": "wms", "name": "w", "url": base + "/wms"}
    for _ in range(2):
        resp = await api.post("/servers/test", json={"server": server, **PLACE})
        assert resp.status == 200, await resp.text()
    assert capabilities_requests(upstream) == 2
    assert len(api.app[SERVICES].sources) == 0


async def test_concurrent_first_requests_open_a_saved_server_once(api, serve, renderer):
    upstream = wms_app(renderer)
    base = await serve(upstream)
    resp = await api.post("/servers", json={"type": "wms", "name": "w", "url": base + "/wms"})
    server_id = (await resp.json())["id"]

    answers = await asyncio.gather(
        *(api.get(f"/servers/{server_id}/tiles/14/{8100 + i}/5400.png") for i in range(8))
    )
    assert {a.status for a in answers} <= {200, 204}, [a.status for a in answers]
    assert capabilities_requests(upstream) == 1
