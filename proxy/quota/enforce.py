"""Enforcement: every upstream request of a saved server with a quota is admitted first.

:class:`ServerGate` is what :class:`~proxy.net.client.UpstreamClient` calls before each
request it sends (each try, each redirect hop) and after its body is read. A gate is
bound to one saved server when its source is opened: :class:`~proxy.cache.sources.OpenSources`
(and the capabilities route) open inside :func:`owned_by`, and every
:class:`~proxy.upstream.base.ServerConnection` made meanwhile takes that server's gate.
Unsaved configs (``POST /servers/test``) have no gate: there is nothing to count against.

Test connection runs inside :func:`probing`: it may use the quota's ``reserve`` of
requests past a spent quota, so an operator can still diagnose the server.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from proxy.quota.model import QuotaConfig
from proxy.quota.periods import Window, frees_at, slot_end, window
from proxy.quota.store import Admission, Limits, QuotaStore
from streaming.errors import SourceQuotaExceeded

log = logging.getLogger(__name__)

OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar("QUOTA_OWNER", default=None)
PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("QUOTA_PROBING", default=False)


@contextmanager
def owned_by(server_id: str) -> Iterator[None]:
    """Connections made inside count their requests against ``server_id``'s quota."""
    token = OWNER.set(server_id)
    try:
        yield
    finally:
        OWNER.reset(token)


@contextmanager
def probing() -> Iterator[None]:
    """Requests sent inside are a test connection's: they may use the quota's reserve."""
    token = PROBING.set(True)
    try:
        yield
    finally:
        PROBING.reset(token)


class QuotaGauges(Protocol):
    """Where usage is reported (:class:`proxy.quota.gauges.QuotaMetrics`)."""

    def report(self, server_id: str, quota: QuotaConfig, requests: int, size: int) -> None:
        """Set the server's usage and limit gauges."""


class Quotas:
    """Admission, usage and warnings of every server's quota, over one store."""

    def __init__(
        self,
        store: QuotaStore,
        gauges: QuotaGauges | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.gauges = gauges
        self.clock = clock

    def gate(self, quota: QuotaConfig | None) -> ServerGate | None:
        """The gate of the server whose source is being opened (:data:`OWNER`), if any."""
        owner = OWNER.get()
        if owner is None or quota is None:
            return None
        return ServerGate(self, owner, quota)

    async def admit(self, server_id: str, quota: QuotaConfig) -> Window:
        """Count one request now, or raise :class:`SourceQuotaExceeded` (nothing is sent)."""
        now_window = window(quota, self.clock())
        reserve = quota.reserve if PROBING.get() else 0
        limits = Limits(quota.requests, quota.bytes, reserve)
        admission = await self.store.admit(server_id, now_window, limits)
        if not admission.admitted:
            raise await self._refusal(server_id, quota, now_window, admission)
        self._report(server_id, quota, admission.requests, admission.bytes)
        if quota.requests and admission.requests == math.ceil(quota.warn_at * quota.requests):
            _warn(server_id, quota, "requests", admission.requests, quota.requests)
        return now_window

    async def spent(self, server_id: str, quota: QuotaConfig, slot: Window, size: int) -> None:
        """Add the bytes of an admitted request's response to its slot."""
        requests, total = await self.store.add_bytes(server_id, slot, size)
        self._report(server_id, quota, requests, total)
        if quota.bytes:
            threshold = math.ceil(quota.warn_at * quota.bytes)
            if total - size < threshold <= total:
                _warn(server_id, quota, "bytes", total, quota.bytes)

    async def usage(self, server_id: str, quota: QuotaConfig) -> dict[str, Any]:
        """Usage against ``quota`` now: used, limit and remaining of each unit, and the reset."""
        now = self.clock()
        now_window = window(quota, now)
        slots = await self.store.usage(server_id, now_window)
        requests, size = sum(s.requests for s in slots), sum(s.bytes for s in slots)
        self._report(server_id, quota, requests, size)
        if now_window.first == now_window.slot:
            resets: float | None = now_window.resets_at
        else:  # rolling: usage next drops when the oldest counted bucket leaves
            resets = slot_end(quota, slots[0].slot) if slots else None
        view: dict[str, Any] = {
            "period": quota.period,
            "requests": _unit(requests, quota.requests),
            "bytes": _unit(size, quota.bytes),
            "resets_at": resets,
            "resets_at_utc": None if resets is None else iso(resets),
        }
        if quota.window_seconds is not None:
            view["window_seconds"] = quota.window_seconds
        return view

    async def forget(self, server_id: str) -> None:
        """Drop a deleted server's counters."""
        await self.store.forget(server_id)

    async def _refusal(
        self, server_id: str, quota: QuotaConfig, now_window: Window, admission: Admission
    ) -> SourceQuotaExceeded:
        slots = await self.store.usage(server_id, now_window)
        resets_at = frees_at(quota, now_window, slots, quota.reserve if PROBING.get() else 0)
        if quota.requests is not None and admission.requests >= quota.requests:
            unit, used, limit = "requests", admission.requests, quota.requests
        else:
            unit, used, limit = "bytes", admission.bytes, quota.bytes or 0
        return SourceQuotaExceeded(
            f"the upstream quota of server {server_id} is spent: {used}/{limit} {unit} "
            f"({quota.describe()}); it admits requests again at {iso(resets_at)}",
            resets_at=resets_at,
            hint=f"raise the server's quota (PATCH /servers/{server_id} with a larger "
            f'"quota"), or wait until {iso(resets_at)}; cached tiles are still served',
            server_id=server_id,
            unit=unit,
            used=used,
            limit=limit,
        )

    def _report(self, server_id: str, quota: QuotaConfig, requests: int, size: int) -> None:
        if self.gauges is not None:
            self.gauges.report(server_id, quota, requests, size)


class ServerGate:
    """One saved server's quota, as the upstream client sees it (its ``QuotaGate``)."""

    def __init__(self, quotas: Quotas, server_id: str, quota: QuotaConfig) -> None:
        self.quotas = quotas
        self.server_id = server_id
        self.quota = quota

    async def admit(self) -> object:
        """Count one request about to be sent; the ticket is the slot it was counted in."""
        return await self.quotas.admit(self.server_id, self.quota)

    async def spent(self, ticket: object, size: int) -> None:
        """The admitted request's response held ``size`` bytes."""
        assert isinstance(ticket, Window)
        await self.quotas.spent(self.server_id, self.quota, ticket, size)


def iso(when: float) -> str:
    """Unix time as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit(used: int, limit: int | None) -> dict[str, int | float | None]:
    if limit is None:
        return {"used": used, "limit": None, "remaining": None}
    return {"used": used, "limit": limit, "remaining": max(0, limit - used)}


def _warn(server_id: str, quota: QuotaConfig, unit: str, used: int, limit: int) -> None:
    log.warning(
        "server %s has used %d of its %d %s (%.0f %%; quota: %s)",
        server_id,
        used,
        limit,
        unit,
        100 * used / limit,
        quota.describe(),
    )
