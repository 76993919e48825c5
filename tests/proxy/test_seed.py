"""The seed kind fills a server's tile cache over AOIs and zooms, as mapproxy-seed does."""

from __future__ import annotations

import pytest

from proxy.errors import InvalidInput
from proxy.jobs.seed import SeedKind
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.proxy.job_helpers import AOI, RES, run_all, services_of
from tests.proxy.tile_helpers import WMQ, add_server
from tests.upstreams.xyz import PATHS, xyz_app


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    app = xyz_app(renderer)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


async def test_after_a_seed_the_area_is_served_from_the_cache(api, upstream):
    app, base = upstream
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    server_id = await add_server(api, {"type": "xyz", "url": url, "resolution": RES})
    services = services_of(api)
    kind = SeedKind()
    params = {"server_id": server_id, "aois": AOI, "min_zoom": 12, "max_zoom": 16}
    cells = await kind.plan(services, params)
    planned = sum(c.spec["tiles"] for c in cells)
    assert {c.spec["z"] for c in cells} == {12, 13, 14, 15, 16}
    assert all(c.spec["x1"] - c.spec["x0"] < 16 and c.spec["y1"] - c.spec["y0"] < 16 for c in cells)
    assert app[PATHS] == []  # planning fetches nothing
    done = await run_all(kind, services, cells, params)
    fetched = [p for p in app[PATHS] if p.startswith("/a/tiles/")]
    assert len(fetched) == len(set(fetched)) == planned  # each tile once
    assert sum(d.upstream_requests for d in done) == planned
    assert sum(d.bytes_written for d in done) > 0
    # The leg of the L is seeded; the corner right of it, inside the bbox, is not.
    leg = WMQ.tile(CENTER_LON - 0.008, CENTER_LAT + 0.008, 16)
    corner = WMQ.tile(CENTER_LON + 0.009, CENTER_LAT + 0.008, 16)
    assert f"/a/tiles/16/{leg.x}/{leg.y}.png" in fetched
    assert f"/a/tiles/16/{corner.x}/{corner.y}.png" not in fetched
    before = len(app[PATHS])
    for z in (12, 14, 16):
        t = WMQ.tile(CENTER_LON - 0.008, CENTER_LAT - 0.006, z)
        resp = await api.get(f"/servers/{server_id}/tiles/{z}/{t.x}/{t.y}")
        assert resp.status == 200 and resp.headers["X-Cache"] == "HIT", resp.headers
    assert len(app[PATHS]) == before, "seeded tiles are served without the upstream"
    resp = await api.get(f"/servers/{server_id}/tiles/16/{corner.x}/{corner.y}")
    assert resp.headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("zooms", [(3, 2), (-1, 2), (10, 40), ("10", 12), (True, 12), (None, 12)])
async def test_zooms_outside_the_server_or_not_a_range_are_refused(api, upstream, zooms):
    _, base = upstream
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    server_id = await add_server(api, {"type": "xyz", "url": url, "max_zoom": 18})
    params = {"server_id": server_id, "aois": AOI, "min_zoom": zooms[0], "max_zoom": zooms[1]}
    with pytest.raises(InvalidInput):
        await SeedKind().plan(services_of(api), params)


async def test_a_seed_too_large_is_refused_before_it_starts(api, upstream):
    app, base = upstream
    server_id = await add_server(api, {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png"})
    world = {"type": "Polygon", "coordinates": [[[-170, -80], [170, -80], [170, 80], [-170, 80],
                                                 [-170, -80]]]}  # fmt: skip
    params = {"server_id": server_id, "aois": world, "min_zoom": 0, "max_zoom": 11}
    with pytest.raises(InvalidInput, match="more than"):
        await SeedKind().plan(services_of(api), params)
    assert app[PATHS] == []
