"""The ``imagery-proxy`` command: serve, and manage servers from the shell."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from proxy.catalog.base import ServerRecord
from proxy.cli_images import add_commands as add_image_commands
from proxy.cli_jobs import add_commands as add_job_commands
from proxy.cli_worker import add_commands as add_worker_commands
from proxy.config import Settings, load_settings
from proxy.errors import NotFound, ProxyError, StartupError, error_body
from proxy.probe import ProbeRequest, probe_server
from proxy.quota.cli import add_commands as add_quota_commands
from proxy.schemas import public_view, stored_dict
from proxy.services import Services, open_services
from proxy.upstream.detect import normalize
from proxy.upstream.registry import SERVER_TYPES, parse_config
from proxy.workers import serve


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = load_settings(args.config, **overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return int(args.run(args, settings))
    except ProxyError as exc:
        print(orjson.dumps(error_body(exc), option=orjson.OPT_INDENT_2).decode(), file=sys.stderr)
        return 1
    except StartupError as exc:  # one line, no traceback: the message says what to fix
        print(f"imagery-proxy: cannot start: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="imagery-proxy", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="catalog, cache and outputs folder")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default from settings)")
    serve.add_argument("--port", type=int, help="port to listen on (default from settings)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes sharing the port (default from settings: 1)",
    )
    serve.set_defaults(run=cmd_serve)

    servers = commands.add_parser("servers", help="imagery servers in the catalog")
    sub = servers.add_subparsers(title="servers commands")
    add = sub.add_parser("add", help="register a server (validated like POST /servers)")
    add.add_argument("--type", choices=SERVER_TYPES, help="default: guessed from --url")
    add.add_argument("--name")
    add.add_argument("--url")
    add.add_argument("--resolution", type=float, help="import resolution, m/px")
    add.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another config field; VALUE is JSON if it parses, else a string",
    )
    add.add_argument("--json", type=Path, help="read the whole config from a JSON file")
    add.set_defaults(run=cmd_servers_add)

    lst = sub.add_parser("list", help="list servers (credentials masked)")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(run=cmd_servers_list)

    test = sub.add_parser("test", help="test connection: preview PNG and diagnostics")
    test.add_argument("server", help="a server id, or a path to a JSON config")
    test.add_argument("--lat", type=float)
    test.add_argument("--lon", type=float)
    test.add_argument("--resolution", type=float, help="m/px (default: the server's)")
    test.add_argument("--size", type=int, help="preview size in px (default from settings)")
    test.add_argument("--output", type=Path, default=Path("preview.png"), help="PNG to write")
    test.set_defaults(run=cmd_servers_test)
    add_quota_commands(sub)
    add_image_commands(commands)
    add_job_commands(commands)
    add_worker_commands(commands)
    return parser


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the service until interrupted (``--workers N``: N processes on one port)."""
    host = args.host or settings.host
    port = args.port or settings.port
    workers = settings.workers if args.workers is None else args.workers
    if workers < 1:
        raise StartupError(f"--workers must be at least 1, not {workers}")
    return serve(settings, host, port, workers)


def cmd_servers_add(args: argparse.Namespace, settings: Settings) -> int:
    """Validate and store a server."""
    raw: dict[str, Any] = orjson.loads(args.json.read_bytes()) if args.json else {}
    for key in ("type", "name", "url", "resolution"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    for item in args.set:
        key, _, value = item.partition("=")
        raw[key] = _json_or_str(value)
    if "type" not in raw:  # any pasted URL: the type is guessed as POST /servers/detect does
        raw, notes = normalize(raw, guess=True)
        for note in notes:
            print(f"{note.severity}: {note.message}", file=sys.stderr)
    config = parse_config(raw)

    async def run() -> dict[str, Any]:
        async with open_services(settings) as services:
            record = await services.catalog.servers.create(stored_dict(config))
            return {"id": record.id, **public_view(record.config)}

    _print_json(asyncio.run(run()))
    return 0


def cmd_servers_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the servers."""

    async def run() -> list[dict[str, Any]]:
        async with open_services(settings) as services:
            records = await services.catalog.servers.all()
            return [{"id": r.id, **public_view(r.config)} for r in records]

    servers = asyncio.run(run())
    if args.json:
        _print_json(servers)
        return 0
    print(f"{'ID':<14}{'TYPE':<8}{'RESOLUTION':<12}{'NAME':<30}URL")
    for s in servers:
        res = s.get("resolution", "-")
        print(f"{s['id']:<14}{s['type']:<8}{res!s:<12}{s['name'][:29]:<30}{s['url']}")
    return 0


def cmd_servers_test(args: argparse.Namespace, settings: Settings) -> int:
    """Run a test connection in-process; write the preview and print the report."""
    ask = ProbeRequest(lat=args.lat, lon=args.lon, resolution=args.resolution, size=args.size)

    async def run() -> int:
        async with open_services(settings) as services:
            result = await probe_server(services, await _load_server(services, args.server), ask)
        report: dict[str, Any] = {"zoom": result.zoom, "resolution": result.resolution}
        if result.error is not None:
            report.update(error_body(result.error))
        if result.image is not None:
            args.output.write_bytes(result.image)
            report["preview"] = str(args.output)
        _print_json({**report, **result.report()})
        return 0 if result.error is None else 1

    return asyncio.run(run())


async def _load_server(services: Services, ref: str) -> ServerRecord | dict[str, Any]:
    """A saved server by id, or an unsaved config from a JSON file."""
    path = Path(ref)
    if path.suffix == ".json" and path.exists():
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        return raw
    record = await services.catalog.servers.get(ref)
    if record is None:
        raise NotFound(f"no server with id {ref!r}")
    return record


def _json_or_str(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    sys.exit(main())
