"""Outputs in the outputs folder on local disk (the default, ``output_url = ""``).

The behaviour of the materializer before stores existed: each cell is written to
``.{name}_{n}.tif.{attempt}.part`` beside its final name, validated, then renamed over
it (:class:`proxy.jobs.outputs.CellOutput`); a rename never leaves a partial file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from proxy.jobs.outputs import CellOutput, inside, outputs_root, remove_stale_temporaries
from proxy.outputs.base import CellHeader, Orphan, validate_cog


@attrs.frozen
class LocalCell:
    """One attempt of one cell in the outputs folder."""

    output: CellOutput
    relative: str

    @property
    def part(self) -> Path:
        """The temporary beside the final file."""
        return self.output.part

    def prepare(self) -> int | None:
        """Make the folder, remove old temporaries; the final file's size if it exists."""
        self.output.prepare()
        final = self.output.final
        return final.stat().st_size if final.exists() else None

    def publish(self) -> int:
        """Validate, fsync and rename the temporary over the final name; its size."""
        validate_cog(self.output.part, self.output.name)
        return self.output.commit()

    def discard(self) -> None:
        """Remove every temporary of the cell."""
        self.output.discard()


class LocalOutputs:
    """The outputs folder: ``outputs_dir``, else ``data_dir/outputs``."""

    def __init__(self, settings: Any) -> None:
        self.root = outputs_root(settings)

    def folder(self, folder: str) -> Path:
        """The job's folder (refused if ``folder`` would leave the root)."""
        return inside(self.root, folder)

    def cell(self, folder: str, file: str, attempt: int, job_id: str, index: int) -> LocalCell:
        """The target of one attempt of a cell."""
        path = self.folder(folder)
        output = CellOutput(path, file, attempt)
        return LocalCell(output, f"{path.name}/{output.name}")

    def write_collection(
        self,
        folder: str,
        description: str,
        created: dt.datetime,
        properties: Mapping[str, Any],
        recorded: Sequence[CellHeader],
    ) -> None:
        """The Collection of the cell files in the folder (each file's own header)."""
        from proxy.jobs.stac import read_header, write_collection

        path = self.folder(folder)
        remove_stale_temporaries(path)
        files = sorted(
            (p for p in path.glob("*.tif") if not p.name.startswith(".")),
            key=lambda p: (len(p.name), p.name),
        )
        headers = [read_header(p) for p in files]
        write_collection(path, path.name, description, headers, created, properties)

    def list_outputs(self, folder: str) -> list[tuple[str, int]]:
        """The cell files of the folder."""
        path = self.folder(folder)
        if not path.is_dir():
            return []
        return [
            (f"{path.name}/{p.name}", p.stat().st_size)
            for p in sorted(path.glob("*.tif"))
            if not p.name.startswith(".")
        ]

    def metadata(self, relative: str) -> dict[str, str]:
        """Nothing: a file has no metadata (the attempt is in its temporary's name only)."""
        return {}

    def list_unfinished(self, folder: str) -> list[tuple[str, str]]:
        """Temporaries left in the folder (the upload id is the file name)."""
        path = self.folder(folder)
        if not path.is_dir():
            return []
        return [(f"{path.name}/{p.name}", p.name) for p in sorted(path.glob(".*.tif.*"))]

    def remove(self, orphan: Orphan) -> None:
        """Delete the orphan's file."""
        folder, _, name = orphan.key.partition("/")
        self.folder(folder).joinpath(name).unlink(missing_ok=True)
