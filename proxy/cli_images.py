"""``imagery-proxy import`` and ``imagery-proxy images``: streaming images from the shell."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from proxy.api_models import ImportAsk, validate_body
from proxy.cli_jobs import add_materialize_options, run_here
from proxy.config import Settings
from proxy.images import ask as asks
from proxy.images.errors import InvalidBBox
from proxy.images.formats import encode
from proxy.images.store import image_view, import_server, load_image, load_server
from proxy.jobs.downloads import start_download
from proxy.jobs.registry import default_kinds
from proxy.jobs.service import Jobs
from proxy.services import open_services


def add_commands(commands: Any) -> None:
    """Add ``import`` and ``images`` to the sub-command parser ``commands``."""
    imp = commands.add_parser("import", help="import AOIs of a server as a streaming image")
    imp.add_argument("--server", required=True, help="server id")
    imp.add_argument("--name", required=True)
    imp.add_argument("--aoi", required=True, type=Path, help="GeoJSON file (lon/lat)")
    imp.add_argument("--resolution", type=float, help="m/px (default: the server's)")
    imp.add_argument("--crs", help="EPSG code, or utm (default EPSG:3857)")
    imp.add_argument("--plan", action="store_true", help="print the plan, import nothing")
    imp.add_argument(
        "--method",
        choices=("streaming", "download"),
        default="streaming",
        help="download: also materialize the image into GeoTIFFs (a job)",
    )
    add_materialize_options(imp)
    imp.add_argument(
        "--wait",
        action="store_true",
        help="download: run the job here with a progress bar until it ends",
    )
    imp.set_defaults(run=cmd_import)

    images = commands.add_parser("images", help="streaming images in the catalog")
    sub = images.add_subparsers(title="images commands")
    lst = sub.add_parser("list", help="list images")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(run=cmd_images_list)
    read = sub.add_parser("read", help="read a bbox of an image into a file")
    read.add_argument("image")
    read.add_argument("--bbox", required=True, help="minx,miny,maxx,maxy (in --crs)")
    read.add_argument("--crs", default="EPSG:4326", help="CRS of the bbox (default EPSG:4326)")
    read.add_argument("--width", type=int)
    read.add_argument("--height", type=int)
    read.add_argument("--resolution", type=float, help="output CRS units per pixel")
    read.add_argument("--detector-resolution", type=float, help="m/px: the resolution guard")
    read.add_argument("--output", type=Path, required=True, help="file: .tif, .npy, .png or .jpg")
    read.set_defaults(run=cmd_images_read)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Plan (``--plan``) or make a streaming image; print it as JSON."""
    from proxy.images.service import ImageService  # the library half

    body: dict[str, Any] = {
        "server_id": args.server,
        "name": args.name,
        "aois": orjson.loads(args.aoi.read_bytes()),
    }
    if args.resolution is not None:
        body["resolution"] = args.resolution
    if args.crs is not None:
        body["crs"] = args.crs
    body["method"] = args.method
    for key in ("max_cell_pixels", "compression"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    ask: ImportAsk = validate_body(ImportAsk, body)

    async def run() -> tuple[dict[str, Any], int]:
        async with open_services(settings) as services:
            server = await import_server(services, ask)
            images = ImageService(services)
            if args.plan:
                return (await images.plan(ask, server)).answer, 0
            image = await images.create(ask, server)
            if ask.method != "download":
                return image_view(image), 0
            jobs = Jobs(services, default_kinds())
            job = await start_download(jobs, image, ask)
            answer = {"image": image_view(image), "job": jobs.view(job)}
            if not args.wait:
                return answer, 0
            _print_json(answer)
            job = await run_here(services, jobs, job)  # prints the job as it ends
            return {}, 0 if job.state == "done" else 1

    answer, status = asyncio.run(run())
    if answer:
        _print_json(answer)
    return status


def cmd_images_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the images."""

    async def run() -> list[dict[str, Any]]:
        async with open_services(settings) as services:
            return [image_view(r) for r in await services.catalog.images.all()]

    views = asyncio.run(run())
    if args.json:
        _print_json(views)
        return 0
    print(f"{'ID':<14}{'SIZE':<14}{'RES':<8}{'CRS':<12}{'SERVER':<14}NAME")
    for v in views:
        size = f"{v['width']}x{v['height']}"
        crs = v["crs"] if len(v["crs"]) < 12 else "(WKT)"
        res = f"{v['resolution']:.2f}"
        print(f"{v['id']:<14}{size:<14}{res:<8}{crs:<12}{v['server_id']:<14}{v['name']}")
    return 0


def cmd_images_read(args: argparse.Namespace, settings: Settings) -> int:
    """Read a bbox of an image into ``--output`` (its suffix names the format)."""
    fmt = asks.parse_format(args.output.suffix.lstrip("."))
    parts = tuple(args.bbox.split(","))
    if len(parts) != 4:
        raise InvalidBBox("--bbox is minx,miny,maxx,maxy")
    query = {"crs": args.crs}
    for key in ("width", "height", "resolution"):
        if getattr(args, key) is not None:
            query[key] = str(getattr(args, key))
    bbox = asks.parse_bbox((parts[0], parts[1], parts[2], parts[3]), query)

    async def run() -> dict[str, Any]:
        from proxy.images.service import ImageService  # the library half

        async with open_services(settings) as services:
            record = await load_image(services, args.image)
            server = await load_server(services, record)
            result = await ImageService(services).read(
                record, server, bbox, args.detector_resolution
            )
            loop = asyncio.get_running_loop()
            grid = result.grid
            encoded = await loop.run_in_executor(
                services.executor, encode, result.rgba, grid.crs, grid.transform, fmt
            )
        args.output.write_bytes(encoded.body)
        return {
            "output": str(args.output),
            "width": int(grid.width),
            "height": int(grid.height),
            "zoom": result.zoom,
            "upstream_requests": int(result.requests),
        }

    _print_json(asyncio.run(run()))
    return 0


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
