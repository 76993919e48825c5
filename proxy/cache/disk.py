"""The disk tier: one file per entry, atomic writes, a byte bound kept by a sweeper.

Layout under ``root`` (``data_dir/cache``): ``{fp[:2]}/{fp}/{namespace}/{z}/{x}/{y}``.
A file per entry read with plain ``os`` calls is ~3x faster than an SQLite-indexed store
(shared/notes/tile-hit-path.md), and deletes by server, zoom or tile range are directory
operations. Names starting with a dot are never entries: ``.locks/`` and ``.sweep.lock``
at the root, and ``.{y}.{pid}.{rand}.tmp`` files being written (renamed into place with
``os.replace``, so a reader sees the old file or the new one, never half of one).

Reads happen in the event loop when that cannot block: files up to ``INLINE_READ_MAX``
are read with ``preadv(RWF_NOWAIT)``, which answers from the page cache or fails at once
with EAGAIN instead of waiting for the disk; only then, and for larger files, the read goes
to the executor. Measured on a loaded 2-core machine (benchmarks/RESULTS.md): a cached
20 KB entry costs ~40-50 µs read and checked in the loop against ~80-290 µs through a
thread; 128 KB still 105 µs against 260 µs; at 256 KB the in-loop read jumps to ~670 µs
(buffers past glibc's 128 KiB mmap threshold fault in page by page) while a thread takes
~230-330 µs. Hence 128 KB: below it the loop is cheaper, above it a stall of the loop
would cost more than the hop.

Least recently used is approximate: an entry's mtime is set at write and bumped on a hit
when older than ``touch_after`` (one ``futimens`` at most per entry per minute), and the
sweeper deletes by oldest mtime. It runs in the executor at start and whenever the bytes
written since the last sweep could put the tier past its bound; an ``flock`` on
``.sweep.lock`` keeps it to one process at a time. With several processes each counts its
own writes, so the tier can pass its bound by the writes of the others since their last
sweep (at most 10 % of the bound each) before one of them sweeps.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from pathlib import Path

from proxy.cache import scan
from proxy.cache.entry import CacheEntry, decode, encode
from proxy.cache.scan import SWEEP_TARGET, DiskStats

log = logging.getLogger(__name__)

DEFAULT_DISK_BYTES = 10 * 1024**3
INLINE_READ_MAX = 128 * 1024
# Writes behind answers (``behind=True``) wait until none has been asked for WRITE_QUIET s
# (a cold read's tiles have all come), WRITE_MAX_DELAY s at most, or until WRITE_MAX_QUEUED
# wait. Creating a file costs ~1 ms of kernel CPU on these ext4 machines: 81 of them taken
# while a read decoded and sent its answer cost it ~5 ms on 2 cores, even from a thread at
# nice 10 (benchmarks/RESULTS.md, reads round 5).
WRITE_QUIET = 0.03
WRITE_MAX_DELAY = 0.25
WRITE_MAX_QUEUED = 512
_COLD = object()  # not readable without waiting for the disk: go to the executor
_Queued = tuple[str, CacheEntry, "asyncio.Future[int]"]


def server_path(fingerprint: str) -> str:
    """The folder of a fingerprint's entries, relative to the tier's root."""
    return f"{fingerprint[:2]}/{fingerprint}"


def entry_path(fingerprint: str, namespace: str, z: int, x: int, y: int) -> str:
    """The path of an entry relative to the tier's root."""
    return f"{server_path(fingerprint)}/{namespace}/{z}/{x}/{y}"


class DiskTier:
    """Entries as files under ``root``, bounded to about ``max_bytes`` (file sizes)."""

    def __init__(
        self,
        root: Path,
        max_bytes: int = DEFAULT_DISK_BYTES,
        *,
        executor: Executor | None = None,
        writer: Executor | None = None,
        clock: Callable[[], float] = time.time,
        inline_max: int = INLINE_READ_MAX,
        touch_after: float = 60.0,
        temp_grace: float = 600.0,
        write_quiet: float = WRITE_QUIET,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._root = str(self.root) + "/"
        self._executor = executor
        self._write_pool = writer or executor  # writes behind the answers: a background pool
        self._clock = clock
        self._inline_max = inline_max
        self._touch_after = touch_after
        self._temp_grace = temp_grace
        self._nowait = hasattr(os, "RWF_NOWAIT")
        self._total = 0  # bytes found by the last sweep
        self._written = 0  # bytes written since
        self._sweep: asyncio.Future[int | None] | None = None
        self._queued: list[_Queued] = []
        self._writer: asyncio.Future[None] | None = None
        self._write_quiet = write_quiet
        self._waited_for = False  # a write someone waits for is queued: no quiet wait
        self._wake: asyncio.Future[None] | None = None
        self._last_queued = 0.0  # loop time of the last write asked

    # -- reads -------------------------------------------------------------------------

    async def read(self, rel: str) -> CacheEntry | None:
        """The entry at ``rel``, or None when absent or damaged (a damaged file is deleted)."""
        found = self._read_inline(rel)
        if found is not _COLD:
            return found  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.read_blocking, rel)

    def _read_inline(self, rel: str) -> object:
        path = self._root + rel
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_size > self._inline_max:
                return _COLD
            buf = bytearray(st.st_size)
            try:
                n = os.preadv(fd, [buf], 0, os.RWF_NOWAIT) if self._nowait else os.readv(fd, [buf])
            except BlockingIOError:
                return _COLD
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._nowait = False  # this filesystem has no RWF_NOWAIT: size alone decides
                return _COLD
            if n != st.st_size:
                return _COLD  # partly in the page cache
            return self._finish(fd, path, buf, st)
        finally:
            os.close(fd)

    def read_blocking(self, rel: str) -> CacheEntry | None:
        """The entry at ``rel`` read with blocking calls (in the executor, or in tools)."""
        path = self._root + rel
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            chunks, left = [], st.st_size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return self._finish(fd, path, b"".join(chunks), st)
        finally:
            os.close(fd)

    def _finish(
        self, fd: int, path: str, data: bytes | bytearray, st: os.stat_result
    ) -> CacheEntry | None:
        entry = decode(data)
        if entry is None:
            self._discard(path, st)
            return None
        now = self._clock()
        if now - st.st_mtime > self._touch_after:
            os.utime(fd, (now, now))
        return entry

    def _discard(self, path: str, st: os.stat_result) -> None:
        # Only if it is still the damaged file: another process may have replaced it.
        try:
            if os.stat(path).st_ino == st.st_ino:
                os.unlink(path)
                log.warning("deleted a damaged cache file: %s", path)
        except OSError:
            pass

    # -- writes ------------------------------------------------------------------------

    async def write(self, rel: str, entry: CacheEntry, *, behind: bool = False) -> None:
        """Store ``entry`` at ``rel`` atomically (in the executor); may start a sweep.

        Writes are grouped: those asked while a batch is being written go together in the
        next executor job. Writes ``behind`` answers (no caller waits, only peers) also
        wait for a quiet moment (:data:`WRITE_QUIET`): a cold read of 81 tiles costs one
        job after its answer, not 81 file creations beside its decoding. Any other write
        queued takes them along at once. Each caller returns once its own file is in place,
        or gets its own error.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._queued.append((rel, entry, done))
        self._last_queued = loop.time()
        if not behind:
            self._waited_for = True
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)  # the writer stops waiting for a quiet moment
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_batches())
        # Not shielded: a cancelled caller cancels only its own future, which the batch
        # skips (the file is still written); a shield cost a future and a hop per write.
        size = await done
        self._written += size
        if self._total + self._written > self.max_bytes:
            self.start_sweep()

    async def _write_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queued:
            batch: list[_Queued] = []
            try:
                await self._quiet(loop)
                batch, self._queued, self._waited_for = self._queued, [], False
                results = await loop.run_in_executor(self._write_pool, self._write_all, batch)
            except BaseException as exc:  # no executor (shutdown), cancelled: tell everyone
                for _, _, done in batch + self._queued:
                    if isinstance(exc, asyncio.CancelledError):
                        done.cancel()
                    elif not done.done():
                        done.set_exception(exc)
                self._queued = []
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, _, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    async def _quiet(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until no write has been asked for a while (see :data:`WRITE_QUIET`)."""
        deadline = loop.time() + WRITE_MAX_DELAY
        while not self._waited_for and len(self._queued) < WRITE_MAX_QUEUED:
            wait = min(self._last_queued + self._write_quiet, deadline) - loop.time()
            if wait <= 0:
                return
            self._wake = loop.create_future()
            await asyncio.wait([self._wake], timeout=wait)

    def _write_all(self, batch: list[_Queued]) -> list[int | BaseException]:
        results: list[int | BaseException] = []
        for rel, entry, _ in batch:
            try:
                results.append(self.write_blocking(rel, entry))
            except Exception as exc:  # the caller of that write gets it
                results.append(exc)
        return results

    def write_blocking(self, rel: str, entry: CacheEntry) -> int:
        """Store ``entry`` at ``rel``: temp file in the same directory, then rename."""
        path = self._root + rel
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        head, body = encode(entry)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            try:
                if os.writev(fd, [head, body]) != len(head) + len(body):
                    raise OSError(errno.ENOSPC, "short write", tmp)
                now = self._clock()
                os.utime(fd, (now, now))  # the LRU clock starts at the write
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return len(head) + len(body)

    # -- the bound ---------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Estimated bytes on disk: the last sweep's count plus what was written since."""
        return self._total + self._written

    async def start(self) -> None:
        """Create the root and sweep once (the count of bytes starts from it)."""
        os.makedirs(self.root, exist_ok=True)
        await self.sweep()

    def start_sweep(self) -> asyncio.Future[int | None]:
        """Start a sweep in the executor unless one runs; the future of the running one."""
        if self._sweep is None or self._sweep.done():
            self._sweep = asyncio.ensure_future(self._run_sweep())
        return self._sweep

    async def sweep(self) -> int | None:
        """Sweep now: bytes on disk afterwards, or None if another process was sweeping."""
        return await self.start_sweep()

    async def wait_sweep(self) -> None:
        """Wait for the running sweep, if any (tests, shutdown)."""
        if self._sweep is not None:
            await self._sweep

    async def _run_sweep(self) -> int | None:
        loop = asyncio.get_running_loop()
        while True:
            written = self._written
            total = await loop.run_in_executor(self._executor, self.sweep_blocking)
            if total is None:
                return None  # another process sweeps
            self._total, self._written = total, self._written - written
            # Writes that landed during the scan may have passed the bound again; a sweep
            # that could not get under its target (files it cannot delete) is not repeated.
            if (
                self._total + self._written <= self.max_bytes
                or total > self.max_bytes * SWEEP_TARGET
            ):
                return total

    def sweep_blocking(self) -> int | None:
        """Blocking body of a sweep (see :func:`proxy.cache.scan.sweep`)."""
        return scan.sweep(str(self.root), self.max_bytes, self._clock(), self._temp_grace)

    # -- deletes and stats ---------------------------------------------------------------

    async def delete(
        self,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> DiskStats:
        """Delete a server's entries, all or those in a zoom (and tile x/y) range.

        The ranges apply to each key's own z/x/y, in every namespace unless ``namespaces``
        is given. A bbox delete calls this once per zoom with that zoom's tile ranges.
        Returns what was deleted.
        """
        loop = asyncio.get_running_loop()
        args = (fingerprint, zooms, xs, ys, namespaces)
        gone = await loop.run_in_executor(self._executor, self.delete_blocking, *args)
        self._total = max(0, self._total - gone.bytes)
        return gone

    def delete_blocking(
        self,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> DiskStats:
        """Blocking body of :meth:`delete`."""
        base = self._root + server_path(fingerprint)
        return scan.delete(base, zooms, xs, ys, namespaces)

    async def stats(self, fingerprint: str) -> DiskStats:
        """Entries and bytes of one server on disk (a scan, in the executor)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.stats_blocking, fingerprint)

    def stats_blocking(self, fingerprint: str) -> DiskStats:
        """Blocking body of :meth:`stats`."""
        return scan.count(self._root + server_path(fingerprint))
