"""Materialize jobs writing to an S3 store: moto in server mode, a separate process on
127.0.0.1. Objects exist, each a valid COG on the ground truth; the STAC Items point at
them; a crash between upload and commit leaves an output that resume records without
fetching again, and that becomes an orphan the cleanup (and the CLI) removes once the job
is cancelled."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pystac
import pytest
from rio_cogeo.cogeo import cog_validate

from proxy.config import load_settings
from proxy.jobs import materialize
from proxy.jobs.materialize import MaterializeKind
from proxy.jobs.service import Jobs
from proxy.outputs import output_store
from proxy.outputs.orphans import cleanup, find_orphans
from streaming.cog import write_cog
from tests.conftest import API_KEY
from tests.proxy.job_helpers import import_image, services_of, work
from tests.proxy.test_materialize_cells import assert_cell_matches
from tests.upstreams.xyz import xyz_app

KEYS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing-secret"}
PREFIX = "exports/v1"
ENDED = ("done", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """``moto_server`` in its own process on loopback (S3 over HTTP, as a real store)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=KEYS["s3_access_key_id"],
        aws_secret_access_key=KEYS["s3_secret_access_key"],
    )  # fmt: skip


@pytest.fixture
def bucket(moto_url) -> str:
    name = f"out-{uuid.uuid4().hex[:12]}"
    s3_client(moto_url).create_bucket(Bucket=name)
    return name


def s3_settings(tmp_path: Path, moto_url: str, bucket: str, **more: Any) -> Any:
    return load_settings(
        env={}, data_dir=tmp_path / "data", api_keys=(API_KEY,),
        allowed_networks=("127.0.0.0/8",), executor_workers=2, preview_size=256,
        output_url=f"s3://{bucket}/{PREFIX}", s3_endpoint_url=moto_url, s3_region="us-east-1",
        **KEYS, **more,
    )  # fmt: skip


@pytest.fixture
def settings(tmp_path, moto_url, bucket, request):
    """The service's settings with outputs on S3 (the ``api`` fixture takes them)."""
    workers = getattr(request, "param", 2)
    return s3_settings(tmp_path, moto_url, bucket, job_workers=workers)


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    app = xyz_app(renderer)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


def objects(client: Any, bucket: str) -> dict[str, dict[str, Any]]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: o for o in listed}


async def wait_ended(api: Any, job_id: str) -> dict[str, Any]:
    for _ in range(1200):
        job: dict[str, Any] = await (await api.get(f"/jobs/{job_id}")).json()
        if job["state"] in ENDED:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(job)


async def test_a_job_writes_valid_cogs_and_its_stac_to_the_bucket(
    api, upstream, ground_truth, bucket, moto_url, tmp_path
):
    image = await import_image(api, upstream[1], name="North field")
    resp = await api.post(f"/images/{image['id']}/materialize", json={"max_cell_pixels": 256})
    assert resp.status == 202, await resp.text()
    job = await wait_ended(api, (await resp.json())["id"])
    assert job["state"] == "done", job
    folder = job["outputs"]["folder"]
    cells = (await (await api.get(f"/jobs/{job['id']}/cells.geojson")).json())["features"]
    assert len(cells) >= 6
    client = s3_client(moto_url)
    listed = objects(client, bucket)
    tifs = {f"{PREFIX}/{c['properties']['output']}" for c in cells}
    items = {k.removesuffix(".tif") + ".json" for k in tifs}
    assert set(listed) == tifs | items | {f"{PREFIX}/{folder}/collection.json"}
    mirror = tmp_path / "mirror" / folder  # the bucket's layout on disk: hrefs must resolve
    mirror.mkdir(parents=True)
    for key in listed:
        client.download_file(bucket, key, str(mirror / key.rsplit("/", 1)[-1]))
    for cell in cells:
        props = cell["properties"]
        key = f"{PREFIX}/{props['output']}"
        path = mirror / key.rsplit("/", 1)[-1]
        assert listed[key]["Size"] == props["bytes"] == path.stat().st_size
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["Metadata"] == {
            "job": job["id"], "cell": str(props["index"]), "attempt": str(props["attempt"])
        }  # fmt: skip
        assert cog_validate(path) == (True, [], [])
        assert_cell_matches(path, ground_truth, 6)
    collection = pystac.Collection.from_file(str(mirror / "collection.json"))
    hrefs = {Path(item.assets["data"].get_absolute_href() or "") for item in collection.get_items()}
    assert hrefs == {mirror / k.rsplit("/", 1)[-1] for k in tifs}
    for key in items:  # relative hrefs: the bucket's folder can be copied or served as is
        raw = json.loads((mirror / key.rsplit("/", 1)[-1]).read_text())
        assert raw["assets"]["data"]["href"] == key.rsplit("/", 1)[-1].replace(".json", ".tif")
        assert all(not link["href"].startswith(("/", "s3:", "http")) for link in raw["links"])
    staging = services_of(api).settings.data_dir / "staging"
    assert not [p for p in staging.rglob("*") if p.is_file()], "local temporaries remain"
    assert not services_of(api).settings.outputs_root.exists(), "written to the local folder"


@pytest.mark.parametrize("settings", [0], indirect=True)  # no runner: the test drives cells
async def test_a_crash_between_upload_and_commit_is_resumed_without_fetching_again(
    api, upstream, bucket, moto_url, monkeypatch
):
    services = services_of(api)
    image = await import_image(api, upstream[1], name="crash")
    resp = await api.post(f"/images/{image['id']}/materialize", json={"max_cell_pixels": 256})
    job = await resp.json()
    planned = await MaterializeKind().plan(services, job["params"])
    store = output_store(services.settings)
    # A worker uploads cell 0 and dies before the catalog records it.
    crashed = await MaterializeKind().run_cell(
        services, work(planned[0], job["params"], job_id=job["id"], attempt=7), lambda n: None
    )
    key = f"{PREFIX}/{crashed.output}"
    written: list[int] = []  # the cells whose pixels are read and written from now on

    async def counting(streaming: Any, window: Any, *args: Any) -> Any:
        written.append(window.col_off * 100_000 + window.row_off)
        return await write_cog(streaming, window, *args)

    monkeypatch.setattr(materialize, "write_cog", counting)
    client = s3_client(moto_url)
    before = client.head_object(Bucket=bucket, Key=key)
    found = await find_orphans(services, job["id"], store)
    assert [(o.key, o.adoptable) for o in found] == [(crashed.output, True)]
    assert "attempt 7, never recorded" in found[0].reason
    assert await cleanup(services, job["id"], store) == []  # resume records it instead

    jobs = Jobs(services, {"materialize": MaterializeKind()})
    runner = jobs.make_runner(slots=2)
    runner.start()
    try:
        done = await wait_ended(api, job["id"])
    finally:
        await runner.stop()
    assert done["state"] == "done"
    cells = {c.index: c for c in await services.catalog.cells.of_job(job["id"])}
    origin = [p.spec["col_off"] * 100_000 + p.spec["row_off"] for p in planned]
    assert sorted(written) == sorted(origin[1:]), "the crashed cell was fetched again"
    assert cells[planned[0].index].bytes == before["ContentLength"]
    after = client.head_object(Bucket=bucket, Key=key)
    assert after["Metadata"]["attempt"] == "7", "the crashed cell was uploaded again"
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert await find_orphans(services, job["id"], store) == []

    # A second run of a done cell uploads nothing: its object is there, whole.
    again = await MaterializeKind().run_cell(
        services, work(planned[1], job["params"], job_id=job["id"], attempt=9), lambda n: None
    )
    assert len(written) == len(planned) - 1 and again.bytes_written == cells[planned[1].index].bytes
    assert client.head_object(Bucket=bucket, Key=f"{PREFIX}/{again.output}")["Metadata"][
        "attempt"
    ] == str(cells[planned[1].index].attempt)


@pytest.mark.parametrize("settings", [0], indirect=True)
async def test_orphans_of_a_cancelled_job_are_listed_and_deleted_by_the_cli(
    api, upstream, bucket, moto_url
):
    services = services_of(api)
    image = await import_image(api, upstream[1], name="gone")
    resp = await api.post(f"/images/{image['id']}/materialize", json={"max_cell_pixels": 256})
    job = await resp.json()
    planned = await MaterializeKind().plan(services, job["params"])
    crashed = await MaterializeKind().run_cell(
        services, work(planned[0], job["params"], job_id=job["id"]), lambda n: None
    )
    client = s3_client(moto_url)
    # An upload that died midway (its parts cost storage until aborted), of another cell.
    stray = f"{PREFIX}/{job['outputs']['folder']}/{planned[1].spec['file']}"
    upload = client.create_multipart_upload(Bucket=bucket, Key=stray)["UploadId"]
    assert (await api.post(f"/jobs/{job['id']}/cancel")).status == 200

    env = {
        **os.environ,
        "IMAGERY_PROXY_OUTPUT_URL": f"s3://{bucket}/{PREFIX}",
        "IMAGERY_PROXY_S3_ENDPOINT_URL": moto_url,
        "IMAGERY_PROXY_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": KEYS["s3_access_key_id"],  # the usual variables, this time
        "AWS_SECRET_ACCESS_KEY": KEYS["s3_secret_access_key"],
    }
    base = [sys.executable, "-m", "proxy.cli", "--data-dir", str(services.settings.data_dir)]
    listed = subprocess.run(
        [*base, "jobs", "orphans", job["id"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    lines = sorted(line.split("\t")[:2] for line in listed.stdout.splitlines())
    assert lines == sorted(
        [["orphan", crashed.output], ["orphan", stray.removeprefix(PREFIX + "/")]]
    )
    assert KEYS["s3_secret_access_key"] not in listed.stdout + listed.stderr
    deleted = subprocess.run(
        [*base, "jobs", "orphans", job["id"], "--delete"], env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert [line.split("\t")[0] for line in deleted.stdout.splitlines()] == ["deleted"] * 2
    assert objects(client, bucket) == {}
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert upload not in [u["UploadId"] for u in uploads]


def test_credentials_never_show_in_the_settings_repr(tmp_path, moto_url, bucket):
    settings = s3_settings(tmp_path, moto_url, bucket)
    assert KEYS["s3_secret_access_key"] not in repr(settings)
    assert KEYS["s3_access_key_id"] not in repr(settings)
    assert json.dumps(str(settings)).count("testing") == 0
