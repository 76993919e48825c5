"""The S3 store's writes against moto_server: create-only on single and multipart uploads
(If-None-Match: *, which moto honours like AWS), the HEAD-then-put guard for stores
without conditional writes, validation before anything is uploaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from proxy.jobs.kinds import CellFailed
from proxy.outputs.s3 import OutputExists, S3Outputs
from tests.proxy.test_outputs_s3 import bucket, moto_url, s3_client, s3_settings

__all__ = ["bucket", "moto_url"]  # fixtures shared with the job tests
MiB = 1024 * 1024


def store_of(tmp_path: Path, moto_url: str, bucket: str, **more: object) -> S3Outputs:
    return S3Outputs.from_settings(s3_settings(tmp_path, moto_url, bucket, **more))


def write_cog(path: Path, seed: int, size: int = 512, cog: bool = True) -> Path:
    """A small GeoTIFF of random pixels: a COG (GDAL's driver), or a plain striped one."""
    pixels = np.random.default_rng(seed).integers(0, 255, (3, size, size), dtype=np.uint8)
    profile = {"count": 3, "dtype": "uint8", "width": size, "height": size,
               "crs": "EPSG:3857", "transform": from_origin(0, 0, 1, 1)}  # fmt: skip
    if cog:
        with rasterio.MemoryFile() as mem:
            with mem.open(driver="GTiff", **profile) as dst:
                dst.write(pixels)
            with mem.open() as src:
                rasterio.shutil.copy(src, path, driver="COG")
    else:
        with rasterio.open(path, "w", driver="GTiff", **profile) as dst:
            dst.write(pixels)
    return path


def test_a_second_upload_to_a_key_is_refused_and_the_first_object_stays(tmp_path, moto_url, bucket):
    store = store_of(tmp_path, moto_url, bucket)
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"first" * 100)
    second.write_bytes(b"second" * 100)
    assert store.upload_create_only(first, "job/x_0.tif", {"attempt": "1"}) == 500
    with pytest.raises(OutputExists):
        store.upload_create_only(second, "job/x_0.tif", {"attempt": "2"})
    client = s3_client(moto_url)
    body = client.get_object(Bucket=bucket, Key="exports/v1/job/x_0.tif")["Body"].read()
    assert body == first.read_bytes()
    assert store.head("job/x_0.tif") == (500, {"attempt": "1"})


def test_large_files_go_in_parts_create_only_and_leave_no_unfinished_upload(
    tmp_path, moto_url, bucket
):
    store = store_of(tmp_path, moto_url, bucket, s3_multipart_bytes=5 * MiB)
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(os.urandom(11 * MiB))
    second.write_bytes(os.urandom(11 * MiB))
    assert store.upload_create_only(first, "job/big_1.tif", {"attempt": "1"}) == 11 * MiB
    client = s3_client(moto_url)
    head = client.head_object(Bucket=bucket, Key="exports/v1/job/big_1.tif")
    assert head["ETag"].strip('"').endswith("-3"), "not a multipart upload of 3 parts"
    with pytest.raises(OutputExists):  # refused at CompleteMultipartUpload
        store.upload_create_only(second, "job/big_1.tif", {"attempt": "2"})
    got = client.get_object(Bucket=bucket, Key="exports/v1/job/big_1.tif")["Body"].read()
    assert got == first.read_bytes()
    assert store.list_unfinished("job") == [], "the refused upload's parts were not aborted"


def test_without_conditional_writes_a_head_guards_the_put(tmp_path, moto_url, bucket):
    store = store_of(tmp_path, moto_url, bucket, s3_conditional_writes=False)
    sent: list[dict[str, object]] = []
    store.client.meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: sent.append(dict(params["headers"]))
    )
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 10)
    store.upload_create_only(path, "job/y_0.tif", {"attempt": "1"})
    assert "If-None-Match" not in sent[0], "a store without conditional writes got one"
    with pytest.raises(OutputExists):
        store.upload_create_only(path, "job/y_0.tif", {"attempt": "2"})
    assert len(sent) == 1, "the guard let a second put through"
    assert store.head("job/y_0.tif") == (10, {"attempt": "1"})


def test_a_cell_is_validated_before_upload_and_publishes_once(tmp_path, moto_url, bucket):
    store = store_of(tmp_path, moto_url, bucket)
    target = store.cell("job-1234", "f_3.tif", 1, "job1234", 3)
    assert target.prepare() is None
    write_cog(target.part, seed=1, size=1024, cog=False)  # striped, no overviews
    with pytest.raises(CellFailed, match="not a valid Cloud-Optimized GeoTIFF"):
        target.publish()
    assert store.head(target.relative) is None and not target.part.exists()
    write_cog(target.part, seed=1)
    size = target.publish()
    assert store.head(target.relative) == (size, {"job": "job1234", "cell": "3", "attempt": "1"})
    # A later attempt that took the cell over finds it whole; a paused one that wakes and
    # publishes its own copy is refused and ends with the object that is there.
    later = store.cell("job-1234", "f_3.tif", 2, "job1234", 3)
    assert later.prepare() == size
    write_cog(later.part, seed=2)
    assert later.publish() == size and not later.part.exists()
    assert store.head(target.relative) == (size, {"job": "job1234", "cell": "3", "attempt": "1"})
    # An object at the key that is not this job's cell is never taken as its output.
    other = store.cell("job-1234", "f_3.tif", 1, "another", 3)
    with pytest.raises(CellFailed, match="is not this job's"):
        other.prepare()
