"""Shared fixtures: the ground-truth raster and its renderer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.app import create_app
from proxy.config import Settings, load_settings
from proxy.net.client import UpstreamClient
from proxy.net.safety import AddressPolicy
from proxy.upstream.base import UpstreamContext
from tests.groundtruth import write_ground_truth
from tests.upstreams.render import GroundTruthRenderer


@pytest.fixture(scope="session")
def ground_truth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ground_truth(tmp_path_factory.mktemp("gt") / "ground_truth.tif")


@pytest.fixture(scope="session")
def renderer(ground_truth: Path) -> GroundTruthRenderer:
    return GroundTruthRenderer(ground_truth)


@pytest.fixture
async def executor():
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
async def upstream_ctx(executor) -> AsyncIterator[UpstreamContext]:
    """The adapters' context with a real client, allowed to reach loopback (tests only)."""
    client = UpstreamClient(
        policy=AddressPolicy(["127.0.0.0/8"]), timeout=10, connect_timeout=5, max_bytes=1 << 24
    )
    yield UpstreamContext(client=client, executor=executor, max_image_pixels=4096 * 4096)
    await client.close()


@pytest.fixture
def serve(aiohttp_server):
    """Start a fake upstream app on 127.0.0.1 and return its base URL (no trailing slash)."""

    async def start(app) -> str:
        server = await aiohttp_server(app, host="127.0.0.1")
        return str(server.make_url("")).rstrip("/")

    return start


API_KEY = "test-key"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(
        env={},
        data_dir=tmp_path / "data",
        api_keys=(API_KEY,),
        allowed_networks=("127.0.0.0/8",),
        executor_workers=2,
        preview_size=256,
    )


@pytest.fixture
async def api(aiohttp_client, settings):
    """A test client of the service, sending the API key on every request."""
    return await aiohttp_client(create_app(settings), headers={"X-API-Key": API_KEY})
