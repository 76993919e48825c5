"""A small real job kind and a controllable tile upstream, for the runner and API tests.

``TileFileKind`` is a kind like the product's: each cell fetches its tiles from a saved
server through ``services.sources`` (cache, limits, metrics and all) and writes them into
one file, through a temporary name renamed when complete. The upstream renders the
ground truth, counts requests per tile, can hold tiles behind a gate (a slow upstream),
and answer 500 for chosen tiles.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import morecantile
from aiohttp import web

from proxy.errors import CatalogUnavailable
from proxy.jobs.kinds import CellDone, CellFailed, CellWork, PlannedCell
from streaming.errors import SourceQuotaExceeded
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.upstreams.render import GroundTruthRenderer

TMS = morecantile.tms.get("WebMercatorQuad")
Z = 15
CENTER_TILE = TMS.tile(CENTER_LON, CENTER_LAT, Z)


def tiles_of_cell(index: int, per_cell: int) -> list[list[int]]:
    """The tiles of cell ``index``: ``per_cell`` tiles in one row, rows one after another."""
    x0, y0 = CENTER_TILE.x - 4, CENTER_TILE.y - 4 + index
    return [[x0 + i, y0, Z] for i in range(per_cell)]


class TileUpstream:
    """A loopback tile server over the ground truth, with counts, a gate and errors."""

    def __init__(self, renderer: GroundTruthRenderer) -> None:
        self.renderer = renderer
        self.hits: Counter[tuple[int, int, int]] = Counter()
        self.gated: set[tuple[int, int, int]] = set()  # tiles held until the gate opens
        self.gate = asyncio.Event()
        self.broken: set[tuple[int, int, int]] = set()  # tiles answering 500
        self.in_flight = 0
        self.delay = 0.0  # seconds each answer takes (a slow upstream)
        self.gated_in_flight = 0
        self.max_gated_in_flight = 0
        self._bytes: dict[tuple[int, int, int], bytes] = {}
        self.app = web.Application()
        self.app.router.add_get("/t/{z}/{x}/{y}.png", self._tile)
        self.url = ""  # the tile URL template, once served

    def body(self, x: int, y: int, z: int) -> bytes:
        """The tile as this upstream sends it (rendered once)."""
        key = (x, y, z)
        if key not in self._bytes:
            data = self.renderer.tile(TMS, x, y, z, 256, "png")
            assert data is not None
            self._bytes[key] = data
        return self._bytes[key]

    async def _tile(self, request: web.Request) -> web.Response:
        m = request.match_info
        key = (int(m["x"]), int(m["y"]), int(m["z"]))
        self.hits[key] += 1
        if key in self.broken:
            return web.Response(status=500, text="render failed for this area")
        self.in_flight += 1
        gated = key in self.gated
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if gated:
                self.gated_in_flight += 1
                self.max_gated_in_flight = max(self.max_gated_in_flight, self.gated_in_flight)
                await self.gate.wait()
            return web.Response(body=self.body(*key), content_type="image/png")
        finally:
            self.in_flight -= 1
            if gated:
                self.gated_in_flight -= 1


class TileFileKind:
    """Cells of tiles fetched through the server's source and written into one file each.

    ``params``: ``{"cells": n, "per_cell": k}``. A cell's file is the concatenation of its
    tiles' bytes, at ``outputs/{job}/cell_{index}.bin``. ``quota`` (requests before
    :class:`SourceQuotaExceeded`, resetting ``quota_reset`` seconds later) models an
    upstream's daily budget.
    """

    name = "tiles"

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.started: list[tuple[int, int]] = []  # (index, attempt) of each run
        self.cancelled: list[int] = []
        self.quota: int | None = None
        self.quota_reset = 0.3
        self.catalog_drops = 0  # runs that meet a dropped catalog connection first

    async def plan(self, services: Any, params: dict[str, Any]) -> list[PlannedCell]:
        cells = []
        for index in range(int(params["cells"])):
            tiles = tiles_of_cell(index, int(params["per_cell"]))
            west, _, _, north = TMS.bounds(*tiles[0])
            _, south, east, _ = TMS.bounds(*tiles[-1])
            ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
            cells.append(
                PlannedCell(
                    index=index,
                    spec={"tiles": tiles},
                    polygon={"type": "Polygon", "coordinates": [ring]},
                )
            )
        return cells

    async def run_cell(self, services: Any, work: CellWork, progress: Any) -> CellDone:
        self.started.append((work.index, work.attempt))
        if self.catalog_drops > 0:
            self.catalog_drops -= 1
            raise CatalogUnavailable("the catalog cannot be used: connection was closed")
        folder = Path(services.settings.outputs_root) / work.job_id
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"cell_{work.index}.bin"
        temporary = folder / f".cell_{work.index}.bin.{work.attempt}.part"
        record = await services.catalog.servers.get(work.server_id)
        source = await services.sources.get(record)
        try:
            with temporary.open("wb") as fh:
                for x, y, z in work.spec["tiles"]:
                    if self.quota is not None:
                        if self.quota <= 0:
                            self.quota = None  # the budget resets at the time given
                            raise SourceQuotaExceeded(
                                "the server's request budget is spent",
                                resets_at=time.time() + self.quota_reset,
                            )
                        self.quota -= 1
                    try:
                        tile = await source.fetch_tile(TileIndex(x, y, z))
                    except Exception as exc:
                        raise CellFailed(f"tile {z}/{x}/{y}: {exc}") from exc
                    assert tile is not None
                    fh.write(tile.data)
                    progress(len(tile.data))
            os.replace(temporary, final)
        except asyncio.CancelledError:
            self.cancelled.append(work.index)
            raise
        finally:
            temporary.unlink(missing_ok=True)
        return CellDone(bytes_written=final.stat().st_size, output=f"{work.job_id}/{final.name}")

    async def finish(self, services: Any, job_id: str, params: dict[str, Any]) -> None:
        self.finished.append(job_id)
