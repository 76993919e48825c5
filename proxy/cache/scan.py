"""Blocking scans of the disk tier's folder: sweep to a byte bound, delete ranges, count.

Plain functions over the layout ``{fp[:2]}/{fp}/{namespace}/{z}/{x}/{y}`` (see disk.py),
run in the executor. Names starting with a dot are never entries.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Collection, Iterator

import attrs

# A sweep deletes down to this share of the bound, so it does not run again at once.
SWEEP_TARGET = 0.9


@attrs.frozen
class DiskStats:
    """Entries and bytes (file sizes) found by a scan."""

    entries: int = 0
    bytes: int = 0


@attrs.frozen
class _File:
    mtime: float
    size: int
    path: str


def walk(top: str) -> Iterator[os.DirEntry[str]]:
    """Every file under ``top``, depth first; vanished directories are skipped."""
    try:
        with os.scandir(top) as it:
            items = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return
    for item in items:
        if item.is_dir(follow_symlinks=False):
            yield from walk(item.path)
        else:
            yield item


def _ints(top: str, allowed: range | None) -> Iterator[str]:
    """Paths of the numeric entries of directory ``top`` within ``allowed`` (None: all)."""
    try:
        names = os.listdir(top)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name.isdigit() and (allowed is None or int(name) in allowed):
            yield f"{top}/{name}"


def _unlink(path: str) -> int:
    """Delete ``path``; its size, or -1 when it was already gone."""
    try:
        size = os.stat(path).st_size
        os.unlink(path)
        return size
    except FileNotFoundError:
        return -1


def sweep(root: str, max_bytes: int, now: float, temp_grace: float) -> int | None:
    """Delete stale temp files, then the oldest entries until under 90 % of ``max_bytes``.

    Returns the bytes left, or None when another process holds ``.sweep.lock``.
    """
    os.makedirs(root, exist_ok=True)
    lock = os.open(f"{root}/.sweep.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        files, total = _scan(root, now, temp_grace)
        if total > max_bytes:
            files.sort(key=lambda f: f.mtime)
            target = max_bytes * SWEEP_TARGET
            for f in files:
                if total <= target:
                    break
                _unlink(f.path)
                total -= f.size
        return total
    finally:
        os.close(lock)  # releases the flock


def _scan(root: str, now: float, temp_grace: float) -> tuple[list[_File], int]:
    files: list[_File] = []
    total = 0
    for top in os.listdir(root):
        if top.startswith("."):
            continue  # .locks, .sweep.lock
        for item in walk(f"{root}/{top}"):
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if item.name.startswith("."):
                # A temp file left by a crash between write and rename.
                if item.name.endswith(".tmp") and now - st.st_mtime > temp_grace:
                    _unlink(item.path)
                continue
            files.append(_File(st.st_mtime, st.st_size, item.path))
            total += st.st_size
    return files, total


def delete(
    base: str,
    zooms: range | None = None,
    xs: range | None = None,
    ys: range | None = None,
    namespaces: Collection[str] | None = None,
) -> DiskStats:
    """Delete the entries under one fingerprint's folder ``base`` within the ranges."""
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return DiskStats()
    whole = xs is None and ys is None
    entries = size = 0
    for ns in names:
        if namespaces is not None and ns not in namespaces:
            continue
        for zdir in _ints(f"{base}/{ns}", zooms):
            gone = _remove_tree(zdir) if whole else _remove_tiles(zdir, xs, ys)
            entries, size = entries + gone.entries, size + gone.bytes
    if zooms is None and whole and namespaces is None:
        shutil.rmtree(base, ignore_errors=True)
    return DiskStats(entries, size)


def count(base: str) -> DiskStats:
    """Entries and bytes under ``base``."""
    entries = size = 0
    for item in walk(base):
        if not item.name.startswith("."):
            try:
                size += item.stat(follow_symlinks=False).st_size
                entries += 1
            except FileNotFoundError:
                pass
    return DiskStats(entries, size)


def _remove_tree(top: str) -> DiskStats:
    entries = size = 0
    for item in walk(top):
        gone = _unlink(item.path)
        if gone >= 0 and not item.name.startswith("."):
            entries, size = entries + 1, size + gone
    shutil.rmtree(top, ignore_errors=True)
    return DiskStats(entries, size)


def _remove_tiles(zdir: str, xs: range | None, ys: range | None) -> DiskStats:
    entries = size = 0
    for xdir in _ints(zdir, xs):
        for path in _ints(xdir, ys):
            gone = _unlink(path)
            if gone >= 0:
                entries, size = entries + 1, size + gone
    return DiskStats(entries, size)
