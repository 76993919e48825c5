"""A partial DELETE /servers/{id}/cache takes a bbox source's cached answers too.

Image reads of a WMS server keep each GetMap answer under namespace ``bbox`` (z=0, x/y
from a digest of the request): nothing in the key says where or how fine it is, so a
deletion by zoom range or by bbox takes them all rather than leave stale pixels.
"""

from __future__ import annotations

import pytest

from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.proxy.tile_helpers import add_server
from tests.upstreams.wms import REQUESTS, wms_app

D = 0.004
AOI = {
    "type": "Polygon",
    "coordinates": [
        [
            [CENTER_LON - D, CENTER_LAT - D],
            [CENTER_LON + D, CENTER_LAT - D],
            [CENTER_LON + D, CENTER_LAT + D],
            [CENTER_LON - D, CENTER_LAT + D],
            [CENTER_LON - D, CENTER_LAT - D],
        ]
    ],
}
NEAR = f"{CENTER_LON - 0.01},{CENTER_LAT - 0.01},{CENTER_LON + 0.01},{CENTER_LAT + 0.01}"


@pytest.mark.parametrize(
    "params", [{"min_zoom": 10, "max_zoom": 18}, {"bbox": NEAR}, {"bbox": NEAR, "max_zoom": 3}]
)
async def test_a_partial_deletion_takes_the_cached_getmap_answers(api, serve, renderer, params):
    app = wms_app(renderer)
    base = await serve(app)
    config = {"type": "wms", "url": base + "/wms", "version": "1.3.0", "crs": "EPSG:3857"}
    server_id = await add_server(api, config)
    resp = await api.post(
        "/imports", json={"server_id": server_id, "name": "w", "aois": AOI, "resolution": 4.0}
    )
    assert resp.status == 201, await resp.text()
    path = f"/images/{(await resp.json())['id']}/window/0,0,100,80.npy"

    def getmaps() -> int:
        return sum(r.get("REQUEST", "").lower() == "getmap" for r in app[REQUESTS])

    assert (await api.get(path)).status == 200
    first = getmaps()
    assert first > 0
    assert (await api.get(path)).status == 200
    assert getmaps() == first  # cached
    stats = await (await api.get(f"/servers/{server_id}/cache")).json()
    assert stats["entries"] >= first

    gone = await api.delete(f"/servers/{server_id}/cache", params=params)
    assert gone.status == 200
    assert (await gone.json())["deleted_entries"] >= first
    assert (await (await api.get(f"/servers/{server_id}/cache")).json())["entries"] == 0
    assert (await api.get(path)).status == 200
    assert getmaps() == 2 * first  # fetched again
