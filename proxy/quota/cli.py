"""``imagery-proxy servers usage [ID]``: usage against quota, per server."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson

from proxy.config import Settings
from proxy.errors import NotFound
from proxy.services import open_services
from proxy.upstream.registry import parse_config


def add_commands(servers: Any) -> None:
    """Add ``usage`` to the ``servers`` sub-commands (an argparse subparsers object)."""
    usage = servers.add_parser("usage", help="upstream usage against each server's quota")
    usage.add_argument("server", nargs="?", help="a server id (default: every server)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    usage.set_defaults(run=cmd_servers_usage)


def cmd_servers_usage(args: argparse.Namespace, settings: Settings) -> int:
    """Print each server's usage, limit and reset time (servers without a quota: ``-``)."""
    rows = asyncio.run(_usage(settings, args.server))
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'ID':<14}{'NAME':<24}{'PERIOD':<16}{'REQUESTS':<22}{'BYTES':<28}RESETS (UTC)")
    for row in rows:
        usage = row["usage"]
        if usage is None:
            print(f"{row['id']:<14}{row['name'][:23]:<24}-")
            continue
        period = usage["period"]
        if period == "rolling":
            period = f"rolling {usage['window_seconds']}s"
        print(
            f"{row['id']:<14}{row['name'][:23]:<24}{period:<16}"
            f"{_fraction(usage['requests']):<22}{_fraction(usage['bytes']):<28}"
            f"{usage['resets_at_utc'] or '-'}"
        )
    return 0


async def _usage(settings: Settings, server_id: str | None) -> list[dict[str, Any]]:
    async with open_services(settings) as services:
        if server_id is None:
            records = await services.catalog.servers.all()
        else:
            record = await services.catalog.servers.get(server_id)
            if record is None:
                raise NotFound(f"no server with id {server_id!r}")
            records = [record]
        rows = []
        for record in records:
            quota = parse_config(record.config).quota
            usage = None if quota is None else await services.quotas.usage(record.id, quota)
            rows.append({"id": record.id, "name": record.config.get("name", ""), "usage": usage})
        return rows


def _fraction(unit: dict[str, Any]) -> str:
    """``used/limit (n %)``, or ``used`` when the unit has no limit."""
    if unit["limit"] is None:
        return str(unit["used"])
    percent = 100 * unit["used"] / unit["limit"] if unit["limit"] else 100.0
    return f"{unit['used']}/{unit['limit']} ({percent:.0f} %)"
