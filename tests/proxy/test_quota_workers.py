"""One quota shared by the worker processes of ``imagery-proxy serve --workers 2``.

200 different tiles asked at once over 200 connections (the kernel spreads them over
both workers), with a quota of 37 requests: exactly 37 reach the loopback upstream,
the counters say 37, and every other answer is a 429 with the reset time.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.proxy.test_metrics import sample
from tests.proxy.test_tiles_workers import P, cluster  # noqa: F401 - the fixture
from tests.proxy.tile_helpers import centre_tile
from tests.upstreams.xyz import PATHS, xyz_app

pytestmark = pytest.mark.slow


async def test_two_workers_share_one_count_under_200_concurrent_requests(
    cluster,  # noqa: F811 - the fixture imported above
    serve,
    renderer,
    tmp_path,
):
    app = xyz_app(renderer)
    base = await serve(app)
    quota = 37
    sid = await cluster.add_server(
        {
            "type": "xyz",
            "url": base + "/a/tiles/{z}/{x}/{y}.png",
            "quota": {"requests": quota, "period": "month"},  # type: ignore[dict-item]
        }
    )
    t = centre_tile(16)
    paths = [f"/servers/{sid}/tiles/16/{t.x + i % 20}/{t.y + i // 20}" for i in range(200)]
    answers = await cluster.get_all(paths)
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == quota and statuses.count(429) == 200 - quota
    assert len(app[PATHS]) == quota  # no double spending, no lost increment
    async with aiohttp.ClientSession(headers=cluster.headers) as session:
        view = await (await session.get(f"{cluster.url}/servers/{sid}")).json()
        metrics = await (await session.get(f"{cluster.url}/metrics")).text()
    assert view["usage"]["requests"] == {"used": quota, "limit": quota, "remaining": 0}
    assert sample(metrics, P + "upstream_quota_used", server=sid, unit="requests") == quota
    # both workers admitted some: the count really was shared
    texts = cluster.per_worker(tmp_path)
    misses = [sample(text, P + "cache_misses_total", server=sid) for text in texts]
    assert len(misses) == 2 and all(m > 0 for m in misses), misses
