"""The outputs folder of jobs: safe names, atomic cell files, temporaries, disk full.

Layout (docs: jobs-api): ``{root}/{sanitized image name}-{job id short}/{name}_{n}.tif``,
beside them ``collection.json`` and one STAC Item JSON per cell (:mod:`proxy.jobs.stac`).

A cell is written to ``.{name}_{n}.tif.{attempt}.part`` (GDAL's temporaries of that file
start with the same prefix), fsynced, then published as ``{name}_{n}.tif`` create-only (a
hard link; the first attempt to publish wins): a reader sees the whole file or none. A
cell's temporaries of every attempt share the prefix ``.{name}_{n}.tif.``, so one glob
removes them on cancel, failure or resume.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import attrs

from proxy.jobs.kinds import CellFailed

DEFAULT_FOLDER = "outputs"
MAX_NAME_BYTES = 100  # well under the 255 bytes of a file name, with room for `_{n}.tif.{a}.part`
JOB_ID_CHARS = 8
# Device names Windows reserves whatever the extension (a share or a copy must not choke).
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_UNSAFE = re.compile(r"[^\w.\-]+")  # \w: letters and digits of any script, and "_"
_RUNS = re.compile(r"[_.]{2,}")


def outputs_root(settings: Any, root: Path | None = None) -> Path:
    """The outputs folder: ``root`` when given, else ``settings.outputs_dir`` when the
    settings have it, else ``settings.data_dir / "outputs"``."""
    if root is not None:
        return Path(root)
    configured = getattr(settings, "outputs_dir", None)
    if configured:
        return Path(configured)
    return Path(settings.data_dir) / DEFAULT_FOLDER


def sanitize(name: str, fallback: str = "image") -> str:
    """A file-name-safe form of ``name``: one path component, never hidden nor reserved.

    Anything but letters, digits, ``-``, ``_`` and ``.`` becomes ``_`` (separators, NUL,
    control characters, ``..``); leading and trailing dots and underscores go; the result
    is cut to :data:`MAX_NAME_BYTES` of UTF-8; an empty result is ``fallback``; a Windows
    device name (``CON``, ``nul.txt``...) gets a leading ``_``.
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = _UNSAFE.sub("_", text)
    text = _RUNS.sub("_", text).strip("._-")
    encoded = text.encode("utf-8")[:MAX_NAME_BYTES]
    text = encoded.decode("utf-8", errors="ignore").strip("._-")
    if not text:
        return fallback
    if text.split(".")[0].upper() in WINDOWS_RESERVED:
        text = "_" + text
    return text


def job_folder_name(image_name: str, job_id: str) -> str:
    """``{sanitized image name}-{job id short}``: the job's folder, relative to the root."""
    return f"{sanitize(image_name)}-{sanitize(job_id, 'job')[:JOB_ID_CHARS]}"


def cell_file_name(image_name: str, index: int) -> str:
    """``{name}_{n}.tif``: cell ``index``'s file."""
    return f"{sanitize(image_name)}_{int(index)}.tif"


def inside(root: Path, *parts: str) -> Path:
    """``root / parts``, refused (:class:`ValueError`) unless it stays under ``root``."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if path == base or not path.is_relative_to(base):
        raise ValueError(f"{'/'.join(parts)!r} leaves the outputs folder")
    return path


@attrs.frozen
class CellOutput:
    """Where one attempt of one cell writes: its temporary and its final file."""

    folder: Path
    name: str  # {name}_{n}.tif
    attempt: int

    @property
    def final(self) -> Path:
        """The cell's file, once complete."""
        return self.folder / self.name

    @property
    def part(self) -> Path:
        """This attempt's temporary: ``.{name}_{n}.tif.{attempt}.part``."""
        return self.folder / f".{self.name}.{int(self.attempt)}.part"

    def prepare(self) -> None:
        """Make the folder and remove this cell's temporaries left by earlier attempts."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.discard()

    def discard(self) -> None:
        """Remove every temporary of this cell (any attempt, GDAL's side files too)."""
        for temp in self.folder.glob(f".{glob_escape(self.name)}.*"):
            with contextlib.suppress(OSError):
                temp.unlink()

    def commit(self) -> int:
        """fsync the temporary, publish it under the final name, fsync the folder; its size.

        Create-only: a final file already there (another attempt's, published first) is
        never replaced, so a worker that wakes after its lease was taken over cannot swap
        the done file for its late one; its temporary is dropped and the file there
        stands (a whole file of the same cell). A hard link is the atomic create-only
        rename; where the filesystem has none, an existence check guards the rename.
        """
        fd = os.open(self.part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(self.part, self.final)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if not self.final.exists():
                os.replace(self.part, self.final)
        self.part.unlink(missing_ok=True)
        fsync_dir(self.folder)
        return self.final.stat().st_size


def remove_stale_temporaries(folder: Path) -> int:
    """Remove every cell temporary in a job's ``folder`` (on resume); how many went."""
    removed = 0
    if not folder.is_dir():
        return 0
    for temp in folder.glob(".*.tif.*"):
        with contextlib.suppress(OSError):
            temp.unlink()
            removed += 1
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full: OSError ENOSPC/EDQUOT or GDAL's."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk space" in text or "disk full" in text


def write_failure(exc: BaseException, output: CellOutput) -> CellFailed:
    """The :class:`CellFailed` of a write that failed (disk full said as such)."""
    if disk_full(exc):
        return CellFailed(f"disk full: cannot write {output.name} in {output.folder}: {exc}")
    return CellFailed(f"cannot write {output.name}: {exc}")
