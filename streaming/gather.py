"""Await many upstream calls with a cap on how many run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def bounded_gather(calls: Sequence[Awaitable[T]], concurrency: int) -> list[T]:
    """Await ``calls``, at most ``concurrency`` at once; the first error cancels the rest."""
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(call: Awaitable[T]) -> T:
        try:
            async with semaphore:
                return await call
        finally:
            # Cancelled while waiting for a slot, the call never started: close it, or
            # it is reported "never awaited" when collected (done ones ignore close()).
            if asyncio.iscoroutine(call):
                call.close()

    tasks = [asyncio.ensure_future(bounded(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
