"""The ``materialize`` job kind: a streaming image's cells, each into one COG (SPEC §6).

``plan`` loads the image and its server, checks the parameters and the resolution guard
(409 before anything is fetched, as for reads), and lists the cells of
:func:`streaming.layout.cells` (only those overlapping an AOI). ``run_cell`` writes one
cell through :func:`streaming.cog.write_cog` into a local temporary, which the outputs store
(:mod:`proxy.outputs`: the outputs folder, or S3) validates and publishes create-only;
``finish`` writes the STAC Collection and removes orphans.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from pyproj import Transformer
from rasterio.transform import Affine

from proxy.catalog.base import ImageRecord, ServerRecord
from proxy.errors import CatalogUnavailable, InvalidInput
from proxy.images.plan import aois_of
from proxy.images.service import _with_fix
from proxy.images.store import image_grid, load_image, load_server
from proxy.jobs.kinds import CellDone, CellFailed, CellWork, PlannedCell
from proxy.jobs.outputs import CellOutput, cell_file_name, job_folder_name, write_failure
from proxy.metrics import server_scope
from proxy.net.client import REQUEST_LOG, RequestRecord
from proxy.outputs import output_store
from proxy.outputs.base import CellHeader
from proxy.outputs.orphans import cleanup
from proxy.services import Services
from streaming.cog import COMPRESSIONS, CogOptions, CogWindow, write_cog
from streaming.errors import CodedError, SourceError, SourceQuotaExceeded, StreamingError
from streaming.guard import ResolutionTooHigh, check_resolution
from streaming.image import StreamingImage, cells, ground_resolution

DEFAULT_COMPRESSION = "deflate"
MIN_CELL_PIXELS = 256
EDGE_SAMPLES = 8
BLOCK = 512
# Blocks read at once per cell: with 512 px blocks over 256 px tiles, 8 blocks keep
# about 30 distinct tiles in flight, more than a job's share of a server's connections.
BLOCKS_IN_FLIGHT = 8
WRITER_THREADS = 2


@cache
def writer_pool() -> ThreadPoolExecutor:
    """Threads that encode and write COGs, apart from the service's executor.

    A COG copy holds its thread for seconds; in the shared executor it would starve the
    decodes of map clients' tiles (fairness, issue 8).
    """
    return ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="cog-writer")


class MaterializeKind:
    """Cells of a streaming image -> Cloud-Optimized GeoTIFFs, plus a STAC Collection."""

    name = "materialize"

    def __init__(self, block: int = BLOCK, blocks_in_flight: int = BLOCKS_IN_FLIGHT) -> None:
        self.block = block
        self.blocks_in_flight = blocks_in_flight
        self.taken_up: set[str] = set()  # jobs whose orphans this process cleaned

    async def plan(self, services: Services, params: dict[str, Any]) -> list[PlannedCell]:
        """The cells of a materialization of ``params["image_id"]`` (guard checked first)."""
        image = await load_image(services, str(params.get("image_id", "")))
        server = await load_server(services, image)
        compression(params)
        cell_pixels = max_cell_pixels(services, params)
        grid = image_grid(image)
        aois = aois_of(image.aois)
        with server_scope(server.id):
            source = await services.sources.get(server)
            streaming = StreamingImage(source, grid, aois, services.executor, services.read_limits)
            whole = grid.as_grid()
            estimate = streaming.estimate(whole)
            detector = detector_resolution(params)
            try:
                check_resolution(
                    ground_resolution(whole),
                    detector,
                    services.settings.guard_max_ratio,
                    estimate,
                    image.resolution_m,
                )
            except ResolutionTooHigh as exc:
                services.metrics.count_guard_refusal()
                raise _with_fix(exc, image, server, detector) from None
        to_lonlat = Transformer.from_crs(grid.crs, 4326, always_xy=True)
        planned = []
        for cell in cells(grid, aois, cell_pixels):
            spec = {
                "col_off": cell.col_off,
                "row_off": cell.row_off,
                "width": cell.width,
                "height": cell.height,
                "file": cell_file_name(image.name, cell.index),
            }
            polygon = lonlat_polygon(to_lonlat, cell.bounds)
            planned.append(PlannedCell(index=cell.index, spec=spec, polygon=polygon))
        return planned

    async def run_cell(
        self, services: Services, work: CellWork, progress: Callable[[int], None]
    ) -> CellDone:
        """Write cell ``work.spec`` of the image into its COG; the file's size and path."""
        image, server = await self._records(services, work.params)
        store = output_store(services.settings)
        if work.job_id not in self.taken_up:  # resume: the garbage of earlier runs goes
            self.taken_up.add(work.job_id)
            await cleanup(services, work.job_id, store)
        folder = job_folder_name(image.name, work.job_id)
        target = store.cell(folder, str(work.spec["file"]), work.attempt, work.job_id, work.index)
        output = CellOutput(target.part.parent, str(work.spec["file"]), work.attempt)
        relative = target.relative
        loop = asyncio.get_running_loop()
        existing = await loop.run_in_executor(writer_pool(), target.prepare)
        if existing is not None:  # published before a crash, not yet recorded: it is whole
            progress(existing)
            return CellDone(bytes_written=existing, output=relative)
        window = CogWindow(
            int(work.spec["col_off"]),
            int(work.spec["row_off"]),
            int(work.spec["width"]),
            int(work.spec["height"]),
        )
        options = CogOptions(
            compression=compression(work.params),
            block=self.block,
            concurrency=self.blocks_in_flight,
            tags=cog_tags(image, server),
        )
        requests: list[RequestRecord] = []
        published = False
        token = REQUEST_LOG.set(requests)
        try:
            with server_scope(server.id):
                source = await services.sources.get(server)
                streaming = StreamingImage(
                    source, image_grid(image), aois_of(image.aois), services.executor,
                    services.read_limits,
                )  # fmt: skip
                await write_cog(streaming, window, target.part, options, writer_pool())
            size = await loop.run_in_executor(writer_pool(), target.publish)
            published = True
        except SourceQuotaExceeded:
            raise
        except SourceError as exc:
            raise CellFailed(f"{exc.code}: {exc.message}") from exc
        except StreamingError as exc:
            raise CellFailed(f"{exc.code}: {exc.message}") from exc
        except OSError as exc:
            raise write_failure(exc, output) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("rasterio"):  # GDAL's write errors
                raise write_failure(exc, output) from exc
            raise
        finally:
            REQUEST_LOG.reset(token)
            if not published:
                target.discard()
        progress(size)
        return CellDone(bytes_written=size, upstream_requests=len(requests), output=relative)

    async def finish(self, services: Services, job_id: str, params: dict[str, Any]) -> None:
        """Write the STAC Collection (one Item per cell file) into the job's folder."""
        image, server = await self._records(services, params)
        store = output_store(services.settings)
        folder = job_folder_name(image.name, job_id)
        recorded = await recorded_headers(services, image, job_id)
        properties = {
            "imagery_proxy:image_id": image.id,
            "imagery_proxy:server_id": server.id,
            "imagery_proxy:job_id": job_id,
            "gsd": image.resolution_m,
        }
        description = (
            f"{image.name}: materialized from server {server_name(server)!r} at "
            f"{image.resolution_m:.4g} m/px (job {job_id})"
        )
        created = dt.datetime.now(dt.UTC)
        await asyncio.get_running_loop().run_in_executor(
            writer_pool(),
            lambda: store.write_collection(folder, description, created, properties, recorded),
        )
        await cleanup(services, job_id, store)

    async def _records(
        self, services: Services, params: dict[str, Any]
    ) -> tuple[ImageRecord, ServerRecord]:
        try:
            image = await load_image(services, str(params.get("image_id", "")))
            server = await load_server(services, image)
        except CatalogUnavailable:  # not the cell's fault: the runner gives it back
            raise
        except CodedError as exc:  # deleted since the job was made (404, 410)
            raise CellFailed(f"{exc.code}: {exc.message}") from exc
        return image, server


async def recorded_headers(services: Services, image: ImageRecord, job_id: str) -> list[CellHeader]:
    """The headers of the job's done cells, from the catalog: the image's grid, offset."""
    grid = image_grid(image)
    headers = []
    for cell in await services.catalog.cells.of_job(job_id):
        if cell.state == "done" and cell.output:
            col, row = int(cell.spec["col_off"]), int(cell.spec["row_off"])
            headers.append(CellHeader(
                name=cell.output.rsplit("/", 1)[-1], crs=grid.crs,
                transform=grid.transform * Affine.translation(col, row),
                width=int(cell.spec["width"]), height=int(cell.spec["height"]),
            ))  # fmt: skip
    return sorted(headers, key=lambda h: (len(h.name), h.name))


def compression(params: dict[str, Any]) -> Any:
    """The asked compression (default deflate), else 400 invalid_input."""
    value = params.get("compression") or DEFAULT_COMPRESSION
    if value not in COMPRESSIONS:
        raise InvalidInput(
            f"unknown compression {str(value)[:32]!r}", hint=f"use one of {', '.join(COMPRESSIONS)}"
        )
    return value


def max_cell_pixels(services: Services, params: dict[str, Any]) -> int:
    """The asked cell size (default the setting), at least :data:`MIN_CELL_PIXELS`."""
    value = params.get("max_cell_pixels")
    if value is None:
        return int(services.settings.max_cell_pixels)
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_CELL_PIXELS:
        raise InvalidInput(
            f"max_cell_pixels must be an integer of at least {MIN_CELL_PIXELS}",
            hint="cells are squares of at most that many pixels a side",
        )
    return value


def detector_resolution(params: dict[str, Any]) -> float | None:
    """The detector's resolution for the guard (None: no guard), else 400."""
    value = params.get("detector_resolution")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("detector_resolution must be a number of metres per pixel")
    if value <= 0:
        raise InvalidInput("detector_resolution must be positive")
    return float(value)


def cog_tags(image: ImageRecord, server: ServerRecord) -> dict[str, str]:
    """The tags every cell carries: where its pixels come from, and when."""
    now = dt.datetime.now(dt.UTC)
    return {
        "SOURCE_SERVER_ID": server.id,
        "SOURCE_SERVER_NAME": server_name(server),
        "RESOLUTION_M": f"{image.resolution_m:.6g}",
        "IMAGE_ID": image.id,
        "IMAGE_NAME": image.name,
        "CREATED_AT": now.isoformat(timespec="seconds"),
        "TIFFTAG_DATETIME": now.strftime("%Y:%m:%d %H:%M:%S"),
        "TIFFTAG_SOFTWARE": "imagery-proxy",
    }


def lonlat_polygon(to_lonlat: Transformer, bounds: tuple[float, float, float, float]) -> Any:
    """A GeoJSON Polygon in lon/lat of ``bounds`` (edges sampled: they curve)."""
    left, bottom, right, top = bounds
    steps = [i / EDGE_SAMPLES for i in range(EDGE_SAMPLES)]
    xs = [left + (right - left) * s for s in steps] + [right] * EDGE_SAMPLES
    ys = [top] * EDGE_SAMPLES + [top - (top - bottom) * s for s in steps]
    xs += [right - (right - left) * s for s in steps] + [left] * EDGE_SAMPLES
    ys += [bottom] * EDGE_SAMPLES + [bottom + (top - bottom) * s for s in steps]
    lon, lat = to_lonlat.transform(xs, ys)
    ring = [[round(float(x), 9), round(float(y), 9)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def server_name(server: ServerRecord) -> str:
    """The server's name, from its config."""
    return str(server.config.get("name", server.id))
