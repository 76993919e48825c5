"""Single flight: one upstream fetch per missing key, in one process and across processes.

In a process, :class:`SingleFlight` keeps one task per key; callers await it through
``asyncio.shield``, so a cancelled caller (a client that went away) leaves the fetch
running for the others. The task leaves the table when it ends, so a failure reaches the
callers waiting at that moment and the next call tries again.

Across the worker processes that share the disk cache, :class:`FileLocks` takes an
``flock`` on one of ``buckets`` lock files under ``.locks/`` (a bucket per key hash: no file
per key, and two keys sharing a bucket only wait for each other briefly). A process that
does not get the lock polls for the entry to appear (another process fetched it) or the lock
to come free; after ``timeout`` it fetches itself rather than wait on a stuck peer. Keys of
one bucket in one process share its lock instead of waiting for each other.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Mark the exception seen: when every caller was cancelled nobody else will.
    if not task.cancelled():
        task.exception()


class SingleFlight(Generic[K, T]):
    """At most one running call of a coroutine function per key."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Future[T]] = {}

    async def run(
        self, key: K, call: Callable[[], Awaitable[T]], on_join: Callable[[], None] | None = None
    ) -> T:
        """The result of ``call()`` for ``key``, or of the call for ``key`` already running.

        ``on_join`` is called at once when this caller joins a running call.
        """
        return await self.share(key, lambda: asyncio.ensure_future(call()), on_join)

    async def share(
        self,
        key: K,
        start: Callable[[], asyncio.Future[T]],
        on_join: Callable[[], None] | None = None,
    ) -> T:
        """Like :meth:`run`, for work already in a future: ``start()`` begins it.

        The cache's loads hand over a future their own task completes, which saves a task
        per miss over :meth:`run` (one task hop less on the event loop per cold tile).
        """
        future = self._tasks.get(key)
        if future is None:
            future = start()
            self._tasks[key] = future
            future.add_done_callback(partial(self._done, key))
        elif on_join is not None:
            on_join()
        return await asyncio.shield(future)

    def _done(self, key: K, future: asyncio.Future[T]) -> None:
        if self._tasks.get(key) is future:
            del self._tasks[key]
        _retrieve(future)

    def __len__(self) -> int:
        """How many calls are running."""
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        """Whether a call for ``key`` is running."""
        return key in self._tasks


class FileLocks:
    """Non-blocking ``flock`` per key bucket, with polling for the other process's result."""

    def __init__(
        self,
        folder: Path,
        *,
        buckets: int = 4096,
        poll: float = 0.02,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.folder = Path(folder)
        self._buckets = buckets
        self._poll = poll
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._made = False
        # Buckets this process holds: [descriptor, fetches under it]. Two keys of one
        # bucket in this process share the lock (single flight per key is in-process
        # already); a second flock of it would make the second key wait for the first's
        # fetch and poll (81 keys over 4096 buckets collide ~half the time).
        self._held: dict[str, list[int]] = {}

    def prepare(self) -> None:
        """Create the folder and every bucket's lock file (blocking: run it in the executor).

        Otherwise the first lock of each bucket creates its file on the event loop, which
        held the loop 100-250 ms while executor threads wrote tiles (the first cold reads
        after a start: /health's max in benchmarks/RESULTS.md, reads round 3).
        """
        os.makedirs(self.folder, exist_ok=True)
        existing = set(os.listdir(self.folder))
        for bucket in range(self._buckets):
            name = f"{bucket:04x}.lock"
            if name not in existing:
                flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
                os.close(os.open(f"{self.folder}/{name}", flags, 0o644))
        self._made = True

    def path(self, name: str) -> str:
        """The lock file of ``name``'s bucket."""
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return f"{self.folder}/{int.from_bytes(digest, 'big') % self._buckets:04x}.lock"

    def try_lock(self, name: str) -> int | None:
        """The descriptor holding ``name``'s lock, or None if another holder has it."""
        if not self._made:
            os.makedirs(self.folder, exist_ok=True)
            self._made = True
        fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def run(
        self,
        name: str,
        done: Callable[[], Awaitable[T | None]],
        call: Callable[[], Awaitable[T]],
        on_wait: Callable[[], None] | None = None,
    ) -> T:
        """``call()`` under ``name``'s lock, unless ``done()`` finds the work done meanwhile.

        ``done`` is asked after the lock is taken (a peer may have finished just before)
        and at each poll while a peer holds it; ``on_wait`` is called once if we wait.
        """
        path = self.path(name)
        held = self._acquire(name, path)
        if not held:
            if on_wait is not None:
                on_wait()
            deadline = self._clock() + self._timeout
            while not held and self._clock() < deadline:
                await self._sleep(self._poll)
                found = await done()
                if found is not None:
                    return found
                held = self._acquire(name, path)
        try:
            found = await done()
            if found is not None:
                return found
            return await call()
        finally:
            if held:
                self._release(path)

    def _acquire(self, name: str, path: str) -> bool:
        """Hold ``path``'s bucket: ours already (another key's fetch), or flock it now."""
        holding = self._held.get(path)
        if holding is not None:
            holding[1] += 1
            return True
        fd = self.try_lock(name)
        if fd is None:
            return False
        self._held[path] = [fd, 1]
        return True

    def _release(self, path: str) -> None:
        holding = self._held[path]
        holding[1] -= 1
        if holding[1] == 0:
            del self._held[path]
            os.close(holding[0])  # releases the flock
