"""The ``seed`` job kind: fill a server's tile cache over AOIs and zooms (as mapproxy-seed).

``plan`` lists, per zoom, blocks of up to :data:`BLOCK` x :data:`BLOCK` WebMercatorQuad
tiles aligned on multiples of :data:`BLOCK`, keeping the blocks that overlap an AOI.
``run_cell`` asks each tile of its block that overlaps an AOI from the server's
:class:`~proxy.tiles.service.TileService`, exactly as the tile route does (pass through,
rendered or cut from a metatile), so the same cache entries fill and later tile requests
of the area are hits. A cell's bytes are the bytes the cache holds for its tiles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely

from proxy.errors import InvalidInput, ProxyError
from proxy.images.plan import aois_of
from proxy.jobs.kinds import CellDone, CellFailed, CellWork, PlannedCell
from proxy.metrics import server_scope
from proxy.net.client import REQUEST_LOG, RequestRecord
from proxy.services import Services
from proxy.tiles.request import TileAsk
from streaming import grid as tiling
from streaming.errors import SourceError, SourceQuotaExceeded
from streaming.layout import project

BLOCK = 16  # tiles a side per cell
TILES_IN_FLIGHT = 8  # per cell
MAX_TILES = 1_000_000  # per job: a seed past this is refused before it starts
HALF = tiling.MERCATOR_HALF_EXTENT


class SeedKind:
    """Tiles of a server over AOIs and a zoom range -> its tile cache."""

    name = "seed"

    async def plan(self, services: Services, params: dict[str, Any]) -> list[PlannedCell]:
        """Blocks of tiles touching the AOIs, zoom by zoom (coarse first)."""
        server_id = str(params.get("server_id", ""))
        plan = await services.tiles.plan(server_id)  # 404 for an unknown server
        scale = plan.scale(256)
        lo, hi = zoom_range(params, scale.lo, scale.hi)
        area = project(aois_of(params.get("aois")), tiling.WEB_MERCATOR_CRS)
        planned: list[PlannedCell] = []
        tiles = 0
        for z in range(lo, hi + 1):
            for x0, y0, x1, y1, count in blocks(area, z):
                tiles += count
                if tiles > MAX_TILES:
                    raise too_many()
                spec = {"z": z, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "tiles": count}
                polygon = block_polygon(z, x0, y0, x1, y1)
                planned.append(PlannedCell(index=len(planned), spec=spec, polygon=polygon))
        return planned

    async def run_cell(
        self, services: Services, work: CellWork, progress: Callable[[int], None]
    ) -> CellDone:
        """Ask every tile of the block that touches an AOI; the bytes cached."""
        server_id = str(work.params.get("server_id", work.server_id))
        spec = work.spec
        z = int(spec["z"])
        area = project(aois_of(work.params.get("aois")), tiling.WEB_MERCATOR_CRS)
        corners = (int(spec["x0"]), int(spec["y0"]), int(spec["x1"]), int(spec["y1"]))
        tiles = tiles_in(area, z, *corners)
        requests: list[RequestRecord] = []
        token = REQUEST_LOG.set(requests)
        total = 0
        try:
            with server_scope(server_id):
                try:
                    plan = await services.tiles.plan(server_id)
                except ProxyError as exc:  # deleted since the job was made
                    raise CellFailed(f"{exc.code}: {exc.message}") from exc
                pending = iter(tiles)

                async def worker() -> None:
                    nonlocal total
                    for x, y in pending:
                        result = await services.tiles.tile(plan, TileAsk(z, x, y))
                        entry = result.entry
                        size = len(entry.body) if entry is not None else 0
                        total += size
                        progress(size)

                await _all(worker, TILES_IN_FLIGHT)
        except SourceQuotaExceeded:
            raise
        except SourceError as exc:
            raise CellFailed(f"{exc.code}: {exc.message}") from exc
        finally:
            REQUEST_LOG.reset(token)
        return CellDone(bytes_written=total, upstream_requests=len(requests))

    async def finish(self, services: Services, job_id: str, params: dict[str, Any]) -> None:
        """Nothing to write: the cache is the output."""


async def _all(worker: Callable[[], Any], count: int) -> None:
    """Run ``count`` copies of ``worker``; the first error cancels the others."""
    tasks = [asyncio.ensure_future(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def zoom_range(params: dict[str, Any], lo: int, hi: int) -> tuple[int, int]:
    """``min_zoom``..``max_zoom`` of ``params``, inside the server's ``lo``..``hi``."""
    values = [params.get("min_zoom"), params.get("max_zoom")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InvalidInput("min_zoom and max_zoom must be whole numbers")
    low, high = int(values[0]), int(values[1])  # type: ignore[arg-type]
    if not lo <= low <= high <= hi:
        raise InvalidInput(
            f"zooms {low}..{high} are not a range within the server's {lo}..{hi}",
            hint=f"give {lo} <= min_zoom <= max_zoom <= {hi}",
        )
    return low, high


def tile_span(z: int) -> float:
    """Metres a WebMercatorQuad tile spans at zoom ``z``."""
    return float(2 * HALF / 2**z)


def blocks(area: Any, z: int) -> list[tuple[int, int, int, int, int]]:
    """(x0, y0, x1, y1, tiles) of the blocks of zoom ``z`` overlapping ``area`` (x1, y1 incl.).

    Refuses (:class:`InvalidInput`) a zoom whose tiles cannot stay under :data:`MAX_TILES`,
    before listing anything: the area alone needs that many, or its bounds hold too many
    blocks to look at.
    """
    span, last = tile_span(z), 2**z - 1
    left, bottom, right, top = area.bounds
    tx0, tx1 = _index(left + HALF, span, last), _index(right + HALF, span, last)
    ty0, ty1 = _index(HALF - top, span, last), _index(HALF - bottom, span, last)
    bx = np.arange(tx0 // BLOCK, tx1 // BLOCK + 1)
    by = np.arange(ty0 // BLOCK, ty1 // BLOCK + 1)
    if area.area / span**2 > MAX_TILES or len(bx) * len(by) > MAX_TILES // BLOCK:
        raise too_many()
    gx, gy = np.meshgrid(bx, by)
    x0 = np.maximum(gx.ravel() * BLOCK, tx0)
    y0 = np.maximum(gy.ravel() * BLOCK, ty0)
    x1 = np.minimum(gx.ravel() * BLOCK + BLOCK - 1, tx1)
    y1 = np.minimum(gy.ravel() * BLOCK + BLOCK - 1, ty1)
    boxes = shapely.box(-HALF + x0 * span, HALF - (y1 + 1) * span,
                        -HALF + (x1 + 1) * span, HALF - y0 * span)  # fmt: skip
    shapely.prepare(area)
    touching = shapely.intersects(area, boxes)
    within = shapely.contains(area, boxes)  # every tile of the block is in
    found = []
    for i in np.nonzero(touching)[0]:
        block = (int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i]))
        if within[i]:
            count = (block[2] - block[0] + 1) * (block[3] - block[1] + 1)
        else:
            count = len(tiles_in(area, z, *block))
        if count:
            found.append((*block, count))
    return found


def too_many() -> InvalidInput:
    """The refusal of a seed past :data:`MAX_TILES`."""
    return InvalidInput(
        f"the seed needs more than {MAX_TILES} tiles", hint="seed a smaller area or fewer zooms"
    )


def tiles_in(area: Any, z: int, x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """The tiles (x, y) of the range whose square overlaps ``area`` (not just an edge)."""
    span = tile_span(z)
    gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
    xs, ys = gx.ravel(), gy.ravel()
    boxes = shapely.box(
        -HALF + xs * span, HALF - (ys + 1) * span, -HALF + (xs + 1) * span, HALF - ys * span
    )
    shapely.prepare(area)  # a densified AOI has thousands of vertices
    # Interiors meet: they intersect, and not only along an edge or at a corner.
    overlap = shapely.intersects(area, boxes) & ~shapely.touches(area, boxes)
    return [(int(x), int(y)) for x, y in zip(xs[overlap], ys[overlap], strict=True)]


def _index(offset: float, span: float, last: int) -> int:
    return min(max(int(offset // span), 0), last)


def block_polygon(z: int, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    """The block's outline in lon/lat (a lon/lat rectangle: Mercator keeps them)."""
    west, north = tiling_lonlat(z, x0, y0)
    east, south = tiling_lonlat(z, x1 + 1, y1 + 1)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def tiling_lonlat(z: int, x: int, y: int) -> tuple[float, float]:
    """lon/lat of the top-left corner of tile ``x, y`` at zoom ``z``."""
    n = 2**z
    lon = x / n * 360.0 - 180.0
    lat = float(np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * y / n)))))
    return round(lon, 9), round(lat, 9)
