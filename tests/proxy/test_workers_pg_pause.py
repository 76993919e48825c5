"""A job paused by a spent quota resumes when the pause ends, not at the next idle poll,
on a PostgreSQL catalog where idle runners otherwise sleep until a NOTIFY."""

from __future__ import annotations

import asyncio

from proxy.app import create_app
from proxy.config import load_settings
from proxy.keys import JOBS
from tests.conftest import API_KEY
from tests.proxy.catalog_backends import create_database, drop_database
from tests.proxy.runner_helpers import TileFileKind, TileUpstream
from tests.proxy.tile_helpers import add_server


async def test_a_paused_job_resumes_at_its_pause_end(aiohttp_client, aiohttp_server, renderer,
                                                     tmp_path):  # fmt: skip
    url = await create_database()
    try:
        upstream = TileUpstream(renderer)
        served = await aiohttp_server(upstream.app, host="127.0.0.1")
        settings = load_settings(
            env={}, data_dir=tmp_path / "data", api_keys=(API_KEY,),
            allowed_networks=("127.0.0.0/8",), catalog_url=url, jobs="postgres",
            job_workers=1,  # set: this replica runs cells too
            job_poll_seconds=0.05, job_idle_poll_seconds=300, upstream_retries=0,
        )  # fmt: skip
        kind = TileFileKind()
        kind.quota, kind.quota_reset = 3, 0.5
        client = await aiohttp_client(
            create_app(settings, kinds={"tiles": kind}), headers={"X-API-Key": API_KEY}
        )
        tiles = str(served.make_url("")).rstrip("/") + "/t/{z}/{x}/{y}.png"
        server_id = await add_server(client, {"type": "xyz", "url": tiles})
        jobs = client.server.app[JOBS]
        assert jobs.runner is not None and jobs.runner.idle_poll == 300
        record = await jobs.create("tiles", name="t", server_id=server_id, image_id=None,
                                   params={"cells": 4, "per_cell": 2})  # fmt: skip
        states = []
        for _ in range(600):  # 30 s at most: far less than the 300 s idle poll
            record = await jobs.get(record.id)
            states.append(record.state)
            if record.state == "done":
                break
            await asyncio.sleep(0.05)
        assert record.state == "done", record
        assert "paused" in states
        assert any(attempt == 2 for _, attempt in kind.started)  # given back, run again
    finally:
        await drop_database(url)
