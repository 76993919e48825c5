"""The contract of an outputs store, and what every store does alike.

A cell is always written to a LOCAL temporary (GDAL needs a seekable file), then
:meth:`CellTarget.publish` validates it as a Cloud-Optimized GeoTIFF and makes it the
cell's output, never over an existing one: a rename on disk, a create-only upload to S3.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from proxy.jobs.kinds import CellFailed


@attrs.frozen(kw_only=True)
class CellHeader:
    """What a cell's STAC Item needs of its COG: file name, CRS, transform, shape."""

    name: str  # {name}_{n}.tif
    crs: Any  # rasterio CRS
    transform: Any  # affine.Affine
    width: int
    height: int


@attrs.frozen(kw_only=True)
class Orphan:
    """An output no done cell records: why, and whether a resumed run would take it."""

    key: str  # relative to the outputs root (or prefix)
    reason: str
    adoptable: bool = False  # a whole output of a cell that has not ended: resume records it
    upload_id: str | None = None  # an unfinished multipart upload, not an object


class CellTarget(Protocol):
    """Where one attempt of one cell writes (its local temporary) and publishes."""

    @property
    def part(self) -> Path:
        """The local temporary the COG is written to."""

    @property
    def relative(self) -> str:
        """The output's path relative to the outputs root: ``{folder}/{name}_{n}.tif``."""

    def prepare(self) -> int | None:
        """Remove earlier temporaries; the size of the output if it already exists whole
        (published before a crash, not yet recorded: resume records it, no fetch)."""

    def publish(self) -> int:
        """Validate the temporary as a COG and publish it, never over another; its size."""

    def discard(self) -> None:
        """Remove this cell's temporaries (cancel, failure)."""


class OutputStore(Protocol):
    """The outputs folder, or an S3-compatible bucket and prefix."""

    def cell(self, folder: str, file: str, attempt: int, job_id: str, index: int) -> CellTarget:
        """The target of one attempt of cell ``index`` of ``job_id``."""

    def write_collection(
        self,
        folder: str,
        description: str,
        created: dt.datetime,
        properties: Mapping[str, Any],
        recorded: Sequence[CellHeader],
    ) -> None:
        """Write the STAC Collection and Items of the job's ``folder`` (hrefs relative).

        ``recorded``: the headers of the job's done cells from the catalog; the local
        folder reads its files instead (it can be listed cheaply and is the truth there).
        """

    def list_outputs(self, folder: str) -> list[tuple[str, int]]:
        """The cell outputs under ``folder``: (relative key, size) each."""

    def metadata(self, relative: str) -> dict[str, str]:
        """Who published the output at ``relative`` (job, cell, attempt), if recorded."""

    def list_unfinished(self, folder: str) -> list[tuple[str, str]]:
        """Unfinished uploads under ``folder``: (relative key, upload id) each."""

    def remove(self, orphan: Orphan) -> None:
        """Delete an orphan object, or abort an unfinished upload."""


def validate_cog(path: Path, name: str) -> None:
    """Raise :class:`CellFailed` unless ``path`` is a valid Cloud-Optimized GeoTIFF."""
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid:
        raise CellFailed(f"{name} is not a valid Cloud-Optimized GeoTIFF: {'; '.join(errors)}")
