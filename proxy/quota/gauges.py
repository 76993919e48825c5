"""Usage and limit gauges of each server's quota, for ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from proxy.quota.model import QuotaConfig

PREFIX = "imagery_proxy"


class QuotaMetrics:
    """``imagery_proxy_upstream_quota_used`` / ``_limit`` by server and unit.

    Every worker reads the same counters, so the most recent value of any worker is the
    right one (``mostrecent`` with ``serve --workers N``), not a sum.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.used = Gauge(
            f"{PREFIX}_upstream_quota_used",
            "Upstream requests or bytes used in the current quota period",
            ["server", "unit"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.limit = Gauge(
            f"{PREFIX}_upstream_quota_limit",
            "Upstream requests or bytes a server's quota allows per period",
            ["server", "unit"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )

    def report(self, server_id: str, quota: QuotaConfig, requests: int, size: int) -> None:
        """Set ``server_id``'s gauges (a unit without a limit reports its usage only)."""
        units = (("requests", requests, quota.requests), ("bytes", size, quota.bytes))
        for unit, used, limit in units:
            self.used.labels(server_id, unit).set(used)
            if limit is not None:
                self.limit.labels(server_id, unit).set(limit)
