"""Purges reach every replica's memory: a Redis channel carries what a purge deleted.

``DELETE /servers/{id}/cache`` through one replica deletes from Redis (every replica sees
that at once) and from that replica's memory LRU; the others' memory still holds copies.
So the replica publishes the purge (fingerprint, zoom, tile ranges, namespaces) on
``{prefix}purges``, and every replica, subscribed from its start, drops the matching
entries from its memory. Pub/sub delivers only to replicas connected at that moment: one
that was cut from Redis during a purge keeps its copies until their TTL (the memory LRU
has no other way to learn of it); the purge's answer is not delayed for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

import attrs
import orjson
from redis.exceptions import RedisError

from proxy.cache.redis import RedisTier, failed

log = logging.getLogger(__name__)


def _span(value: range | None) -> list[int] | None:
    return None if value is None else [value.start, value.stop]


def _range(value: Any) -> range | None:
    return None if value is None else range(int(value[0]), int(value[1]))


@attrs.frozen
class Purge:
    """What one purge deleted: a server's entries, all or within ranges."""

    fingerprint: str
    zooms: range | None = None
    xs: range | None = None
    ys: range | None = None
    namespaces: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        fingerprint: str,
        zooms: range | None = None,
        xs: range | None = None,
        ys: range | None = None,
        namespaces: Collection[str] | None = None,
    ) -> Purge:
        """A purge from :meth:`TileCache.delete`'s arguments."""
        kinds = None if namespaces is None else frozenset(namespaces)
        return cls(fingerprint, zooms, xs, ys, kinds)

    def matches(self, key_id: str) -> bool:
        """Whether the entry ``key_id`` (``{fp[:2]}/{fp}/{ns}/{z}/{x}/{y}``) was purged."""
        _, fp, ns, z, x, y = key_id.split("/")
        return (
            fp == self.fingerprint
            and (self.namespaces is None or ns in self.namespaces)
            and (self.zooms is None or int(z) in self.zooms)
            and (self.xs is None or int(x) in self.xs)
            and (self.ys is None or int(y) in self.ys)
        )

    def encode(self) -> bytes:
        """The message published for this purge."""
        kinds = None if self.namespaces is None else sorted(self.namespaces)
        return orjson.dumps(
            {
                "fp": self.fingerprint,
                "z": _span(self.zooms),
                "x": _span(self.xs),
                "y": _span(self.ys),
                "ns": kinds,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Purge | None:
        """The purge in a message, or None when it is not one of ours."""
        try:
            found = orjson.loads(data)
            kinds = found["ns"]
            return cls(
                str(found["fp"]),
                _range(found["z"]),
                _range(found["x"]),
                _range(found["y"]),
                None if kinds is None else frozenset(str(k) for k in kinds),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            return None


class PurgeChannel:
    """Publishes this replica's purges and applies every replica's to ``on_purge``."""

    def __init__(self, tier: RedisTier, *, retry: float = 1.0, poll: float = 1.0) -> None:
        self.tier = tier
        self.channel = tier.prefix + "purges"
        self.subscribed = asyncio.Event()  # set while the subscription holds (tests wait on it)
        self._retry = retry
        self._poll = poll
        self._task: asyncio.Task[None] | None = None

    async def publish(self, purge: Purge) -> None:
        """Tell every replica (a failure is logged: their copies then live to their TTL)."""
        message = purge.encode()
        sent = await self.tier.call(
            "publish", lambda: self.tier.client.publish(self.channel, message)
        )
        if failed(sent):
            log.warning("a cache purge could not be sent to the other replicas")

    def listen(self, on_purge: Callable[[Purge], object]) -> None:
        """Subscribe in the background, again after each failure (every ``retry`` s)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._listen(on_purge))

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, on_purge: Callable[[Purge], object]) -> None:
        while True:
            pubsub = self.tier.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=self._poll)
                    if message is not None and message.get("type") == "message":
                        purge = Purge.decode(message["data"])
                        if purge is not None:
                            on_purge(purge)
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("cache purge channel lost: %r", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry)
