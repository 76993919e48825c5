"""Single flight across replicas: a lease per key in Redis, released only by its owner.

The process that takes ``SET {key}:lock {owner} NX PX {lease}`` fetches and stores the
entry; the others poll the entry with a short backoff (10 ms growing to 100 ms) until it
appears, or until the lock is free again (released, or expired because its owner died),
when the first to take it checks the entry once more and fetches only if it is still
missing. The owner renews its lease while it fetches (a slow upstream outlives a short
lease), and releases it with a compare-and-delete script, so a lock that expired and was
taken by another replica is never deleted by the first one.

In front of this, :class:`proxy.cache.flight.SingleFlight` keeps one load per key in a
process, so a process holds or waits for at most one Redis lock per key. When Redis fails
(or its circuit is open) the lock is skipped: the replica fetches on its own, as a cache
without Redis would, rather than wait or fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from proxy.cache.redis import LOCK_SUFFIX, RedisTier, failed

T = TypeVar("T")

# Delete (or extend) the lock only while it is still ours.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_HOST = socket.gethostname()


class RedisLocks:
    """One fetch per key across every replica sharing ``tier``'s Redis."""

    def __init__(
        self,
        tier: RedisTier,
        *,
        lease: float = 5.0,
        timeout: float = 15.0,
        poll: float = 0.01,
        max_poll: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tier = tier
        self.lease_ms = max(1, int(lease * 1000))
        self._timeout = timeout
        self._poll = poll
        self._max_poll = max_poll
        self._clock = clock
        self._sleep = sleep
        self._release = tier.client.register_script(RELEASE)
        self._extend = tier.client.register_script(EXTEND)

    def lock_key(self, name: str) -> str:
        """The Redis key of ``name``'s lock (next to its entry, out of SCANs' results)."""
        return self.tier.key(name) + LOCK_SUFFIX

    async def acquire(self, lock: str, owner: str) -> bool | None:
        """True if ``owner`` took ``lock``, False if a peer holds it, None if Redis failed."""
        client, lease = self.tier.client, self.lease_ms
        got = await self.tier.call("lock", lambda: client.set(lock, owner, nx=True, px=lease))
        return None if failed(got) else bool(got)

    async def release(self, lock: str, owner: str) -> bool:
        """Delete ``lock`` if ``owner`` still holds it; whether it did."""
        done = await self.tier.call("unlock", lambda: self._release(keys=[lock], args=[owner]))
        return done == 1

    async def run(
        self,
        name: str,
        done: Callable[[], Awaitable[T | None]],
        call: Callable[[], Awaitable[T]],
        on_wait: Callable[[], None] | None = None,
    ) -> T:
        """``call()`` under ``name``'s lock, unless ``done()`` finds the work done meanwhile.

        The same contract as :meth:`proxy.cache.flight.FileLocks.run`: ``done`` is asked
        once the lock is ours and at each poll while a peer holds it; ``on_wait`` is called
        once if we wait. Past ``timeout`` of waiting, we fetch rather than wait on a peer.
        """
        lock = self.lock_key(name)
        owner = f"{_HOST}:{os.getpid()}:{secrets.token_hex(8)}"
        got = await self.acquire(lock, owner)
        if got is False:
            if on_wait is not None:
                on_wait()
            deadline, delay = self._clock() + self._timeout, self._poll
            while got is False and self._clock() < deadline:
                await self._sleep(delay)
                delay = min(self._max_poll, delay * 1.5)
                found = await done()
                if found is not None:
                    return found
                got = await self.acquire(lock, owner)
        if got is not True:  # Redis failed, or the peer is stuck: fetch on our own
            return await call()
        keeper = asyncio.ensure_future(self._keep(lock, owner))
        try:
            found = await done()
            if found is not None:
                return found
            return await call()
        finally:
            keeper.cancel()
            await self.release(lock, owner)

    async def _keep(self, lock: str, owner: str) -> None:
        """Renew the lease every third of it while the fetch runs (until it is lost)."""
        args: list[str | int] = [owner, self.lease_ms]
        while True:
            await self._sleep(self.lease_ms / 3000)
            kept = await self.tier.call("lock", lambda: self._extend(keys=[lock], args=args))
            if kept == 0:
                return  # expired and maybe taken: the fetch goes on, unlocked
