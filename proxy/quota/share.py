"""What an import or a materialization would use of its server's quota, before it starts.

``POST /imports/plan`` (and the materialize request) answer :func:`quota_share`; with
``require_quota: true`` they refuse through :func:`check_fits` (409 ``quota_insufficient``).
The estimate counts every request the plan makes, cached ones included: an upper bound.
"""

from __future__ import annotations

from typing import Any, Protocol

from proxy.catalog.base import Catalog, ServerRecord
from proxy.errors import QuotaInsufficient
from proxy.quota.enforce import Quotas
from proxy.upstream.registry import parse_config


class HasQuotas(Protocol):
    """What :func:`quota_share` reads of the services."""

    @property
    def quotas(self) -> Quotas:
        """The service's quota counters."""


async def quota_share(
    services: HasQuotas, server: ServerRecord, requests: int, bytes_: int
) -> dict[str, Any] | None:
    """The share of ``server``'s remaining quota that ``requests`` and ``bytes_`` would use.

    ``None`` when the server has no quota. For each limited unit: ``needed``, ``used``,
    ``limit``, ``remaining`` and ``share`` (needed / remaining; ``null`` when nothing
    remains); ``fits`` when every unit's need is within what remains.
    """
    quota = parse_config(server.config).quota
    if quota is None:
        return None
    usage = await services.quotas.usage(server.id, quota)
    answer: dict[str, Any] = {
        "period": usage["period"],
        "resets_at": usage["resets_at"],
        "resets_at_utc": usage["resets_at_utc"],
    }
    fits = True
    for unit, needed in (("requests", requests), ("bytes", bytes_)):
        used, limit = usage[unit]["used"], usage[unit]["limit"]
        if limit is None:
            continue
        remaining = max(0, limit - used)
        answer[unit] = {
            "needed": needed,
            "used": used,
            "limit": limit,
            "remaining": remaining,
            "share": round(needed / remaining, 4) if remaining else None,
        }
        fits = fits and needed <= remaining
    answer["fits"] = fits
    return answer


def check_fits(share: dict[str, Any] | None, server_id: str) -> None:
    """Refuse (:class:`QuotaInsufficient`) a share that does not fit the remaining quota."""
    if share is None or share["fits"]:
        return
    short = [
        f"{share[unit]['needed']} {unit} needed, {share[unit]['remaining']} left "
        f"of {share[unit]['limit']}"
        for unit in ("requests", "bytes")
        if unit in share and share[unit]["needed"] > share[unit]["remaining"]
    ]
    raise QuotaInsufficient(
        f"the import does not fit server {server_id}'s quota: {'; '.join(short)} "
        f"(it resets at {share['resets_at_utc']})",
        server_id=server_id,
        quota=share,
    )


class HasCatalogAndQuotas(HasQuotas, Protocol):
    """What :func:`report_usage` reads of the services."""

    @property
    def catalog(self) -> Catalog:
        """The catalog."""


async def report_usage(services: HasCatalogAndQuotas) -> None:
    """Set the usage gauges of every server with a quota (before a metrics scrape)."""
    for record in await services.catalog.servers.all():
        quota = parse_config(record.config).quota
        if quota is not None:
            await services.quotas.usage(record.id, quota)  # reports as it reads
