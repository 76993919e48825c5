"""Outputs in an S3-compatible store (``output_url = s3://bucket/prefix``).

A cell's COG is written to a local staging temporary (``data_dir/staging/{folder}``,
the same :class:`proxy.jobs.outputs.CellOutput` names as the outputs folder), validated,
then uploaded CREATE-ONLY to ``{prefix}/{folder}/{name}_{n}.tif`` with boto3's managed
transfer (multipart above ``s3_multipart_bytes``, at most ``s3_upload_concurrency``
parts in flight: memory stays about chunk x concurrency whatever the cell's size).

Create-only: ``If-None-Match: *`` on PutObject and CompleteMultipartUpload (AWS since
2024, MinIO, moto); s3transfer does not pass that argument, so an event handler of the
client adds it to every write of a ``.tif`` key. Stores without conditional writes
(``s3_conditional_writes = false``) get HEAD-then-put: a put only when HEAD finds no
object, then a HEAD to read back which attempt's object is there. That leaves a race
between two attempts of one cell (a worker paused past its lease and the one that took
the cell over); it loses nothing: both upload whole, validated COGs of the same cell (a
PUT is atomic: never a partial object), the catalog's attempt fencing records one
completion, and the size recorded is read back from the object that stays.

Each object carries its job, cell index and attempt as metadata, so resume can tell its
own whole output (recorded without fetching again) from anything else. boto3's calls
block: the materializer runs them on its writer threads, like the COG copy before them
(aiobotocore has no managed multipart transfer, and the upload is one long call per cell).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from proxy.jobs.kinds import CellFailed
from proxy.jobs.outputs import CellOutput, sanitize
from proxy.outputs.base import CellHeader, Orphan, validate_cog

CREATE_ONLY_SUFFIX = ".tif"
STAGING = "staging"
PRECONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict")


def parse_output_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at its ends)."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def error_code(exc: ClientError) -> str:
    """The S3 error code of ``exc`` (or its HTTP status)."""
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


class OutputExists(Exception):
    """A create-only upload found an object at its key."""


@attrs.frozen
class S3Cell:
    """One attempt of one cell: a local staging temporary, then an object."""

    store: S3Outputs
    output: CellOutput  # in the staging folder
    relative: str
    job_id: str
    index: int

    @property
    def part(self) -> Path:
        """The local temporary."""
        return self.output.part

    @property
    def metadata(self) -> dict[str, str]:
        """Who uploads: the object's metadata."""
        return {"job": self.job_id, "cell": str(self.index), "attempt": str(self.output.attempt)}

    def ours(self, metadata: Mapping[str, str]) -> bool:
        """Whether an object with ``metadata`` is an output of this job's cell."""
        return metadata.get("job") == self.job_id and metadata.get("cell") == str(self.index)

    def prepare(self) -> int | None:
        """Clear the staging temporaries; the object's size if it is this cell's output."""
        self.output.prepare()
        head = self.store.head(self.relative)
        if head is None:
            return None
        size, metadata = head
        if not self.ours(metadata):
            raise CellFailed(f"{self.store.url(self.relative)} exists and is not this job's")
        return size

    def publish(self) -> int:
        """Validate, upload create-only, remove the temporary; the object's size."""
        try:
            validate_cog(self.part, self.output.name)
            size = self.store.upload_create_only(self.part, self.relative, self.metadata)
        except OutputExists:
            # Another attempt of this cell uploaded first (a worker past its lease): its
            # object is a whole, validated COG of the same cell.
            return self.prepare() or 0
        finally:
            self.output.discard()
        return size

    def discard(self) -> None:
        """Remove the staging temporaries."""
        self.output.discard()


class S3Outputs:
    """A bucket and prefix of an S3-compatible store."""

    def __init__(
        self, client: Any, bucket: str, prefix: str, staging: Path, *,
        conditional: bool = True, transfer: TransferConfig | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.staging = staging
        self.conditional = conditional
        self.transfer = transfer or TransferConfig()
        if conditional:
            events = client.meta.events
            events.register("before-parameter-build.s3.PutObject", self._create_only)
            events.register("before-parameter-build.s3.CompleteMultipartUpload", self._create_only)

    @classmethod
    def from_settings(cls, settings: Any) -> S3Outputs:
        """The store of ``output_url``, its endpoint, region and credentials."""
        bucket, prefix = parse_output_url(settings.output_url)
        keys = {}
        if settings.s3_access_key_id:
            keys = {
                "aws_access_key_id": settings.s3_access_key_id,
                "aws_secret_access_key": settings.s3_secret_access_key,
            }
        pool = max(10, 2 * settings.s3_upload_concurrency + 2)
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region or None,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=pool,
                s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
            ),
            **keys,
        )
        transfer = TransferConfig(
            multipart_threshold=settings.s3_multipart_bytes,
            multipart_chunksize=settings.s3_multipart_bytes,
            max_concurrency=settings.s3_upload_concurrency,
            max_io_queue=settings.s3_upload_concurrency,
        )
        return cls(
            client, bucket, prefix, Path(settings.data_dir) / STAGING,
            conditional=settings.s3_conditional_writes, transfer=transfer,
        )  # fmt: skip

    def _create_only(self, params: dict[str, Any], **_: Any) -> None:
        if str(params.get("Key", "")).endswith(CREATE_ONLY_SUFFIX):
            params["IfNoneMatch"] = "*"

    def key(self, relative: str) -> str:
        """The object key of a path relative to the outputs root."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative_of(self, key: str) -> str:
        """The inverse of :meth:`key`."""
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def url(self, relative: str) -> str:
        """``s3://bucket/key`` of ``relative`` (for messages)."""
        return f"s3://{self.bucket}/{self.key(relative)}"

    def cell(self, folder: str, file: str, attempt: int, job_id: str, index: int) -> S3Cell:
        """The target of one attempt of a cell."""
        folder, file = sanitize(folder, "job"), sanitize(file, "cell.tif")
        output = CellOutput(self.staging / folder, file, attempt)
        return S3Cell(self, output, f"{folder}/{file}", job_id, index)

    def head(self, relative: str) -> tuple[int, dict[str, str]] | None:
        """(size, metadata) of the object, or None when there is none."""
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise CellFailed(f"cannot read {self.url(relative)}: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise CellFailed(f"cannot reach the S3 store: {exc}") from exc
        return int(answer["ContentLength"]), dict(answer.get("Metadata", {}))

    def upload_create_only(self, path: Path, relative: str, metadata: dict[str, str]) -> int:
        """Upload ``path`` unless an object is at ``relative`` (:class:`OutputExists`)."""
        if not self.conditional and self.head(relative) is not None:
            raise OutputExists(relative)
        args = {"Metadata": metadata, "ContentType": "image/tiff; application=geotiff"}
        try:
            self.client.upload_file(
                str(path), self.bucket, self.key(relative), ExtraArgs=args, Config=self.transfer
            )
        except (ClientError, S3UploadFailedError) as exc:
            # boto3's transfer wraps the S3 error (raised inside its handler): unwrap it.
            cause = exc if isinstance(exc, ClientError) else exc.__cause__ or exc.__context__
            code = error_code(cause) if isinstance(cause, ClientError) else str(exc)
            if code in PRECONDITION_FAILED:
                raise OutputExists(relative) from exc
            raise CellFailed(f"cannot upload {self.url(relative)}: {code}") from exc
        except BotoCoreError as exc:
            raise CellFailed(f"cannot upload {self.url(relative)}: {exc}") from exc
        head = self.head(relative)
        if head is None:
            raise CellFailed(f"{self.url(relative)} is missing right after its upload")
        return head[0]

    def write_collection(
        self,
        folder: str,
        description: str,
        created: dt.datetime,
        properties: Mapping[str, Any],
        recorded: Sequence[CellHeader],
    ) -> None:
        """Write the STAC files locally (hrefs relative), then upload them, Items first."""
        from proxy.jobs.stac import COLLECTION, write_collection

        folder = sanitize(folder, "job")
        with tempfile.TemporaryDirectory(dir=self._staging_root()) as tmp:
            local = Path(tmp) / folder
            local.mkdir()
            write_collection(local, folder, description, recorded, created, properties)
            files = sorted(local.glob("*.json"), key=lambda p: p.name == COLLECTION)
            for path in files:  # the Collection last: it names Items that are there
                self.client.upload_file(
                    str(path), self.bucket, self.key(f"{folder}/{path.name}"),
                    ExtraArgs={"ContentType": "application/json"}, Config=self.transfer,
                )  # fmt: skip

    def _staging_root(self) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging

    def list_outputs(self, folder: str) -> list[tuple[str, int]]:
        """The ``.tif`` objects under the job's folder."""
        found = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.key(f"{folder}/")):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith(CREATE_ONLY_SUFFIX):
                    found.append((self.relative_of(entry["Key"]), int(entry["Size"])))
        return found

    def metadata(self, relative: str) -> dict[str, str]:
        """The object's metadata (job, cell, attempt); {} when it is gone."""
        head = self.head(relative)
        return head[1] if head else {}

    def list_unfinished(self, folder: str) -> list[tuple[str, str]]:
        """Multipart uploads under the job's folder that never completed."""
        found = []
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.key(f"{folder}/")):
            for upload in page.get("Uploads", []):
                found.append((self.relative_of(upload["Key"]), str(upload["UploadId"])))
        return found

    def remove(self, orphan: Orphan) -> None:
        """Delete the object, or abort the unfinished upload."""
        key = self.key(orphan.key)
        if orphan.upload_id is not None:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=orphan.upload_id
            )
        else:
            self.client.delete_object(Bucket=self.bucket, Key=key)
