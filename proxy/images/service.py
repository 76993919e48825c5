"""Streaming images over saved servers: plan and create imports, read with the guard.

Every read runs inside :func:`~proxy.metrics.server_scope` of the image's server, so its
upstream requests and cache events count for that server. A read is estimated first
(zoom, upstream requests; no request is sent), then refused by the resolution guard
(409) or the read budgets (413), and only then read through the server's opened source,
which reads through the tile cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import numpy as np
from cachetools import LRUCache

from proxy.api_models import ImportAsk
from proxy.catalog.base import ImageRecord, NewImage, ServerRecord
from proxy.images.ask import BBoxAsk, PreviewAsk, ReadAsk, TileAsk, WindowAsk
from proxy.images.plan import (
    Planned,
    aois_of,
    check_aois_inside,
    crs_for,
    plan_answer,
    plan_grid_for,
    server_bounds,
    server_resolution,
)
from proxy.images.store import crs_text, image_grid
from proxy.metrics import server_scope
from proxy.quota.share import check_fits, quota_share
from proxy.services import Services
from streaming import grid as tiling
from streaming.aoi import AOIs
from streaming.errors import ReadTooLarge
from streaming.guard import ResolutionTooHigh, check_resolution
from streaming.image import (
    ImageGrid,
    ImageRead,
    StreamingImage,
)
from streaming.mosaic import Allocate, Grid
from streaming.types import BBox

T = TypeVar("T")


@attrs.frozen
class ImageService:
    """Imports and reads of streaming images, over the service's resources."""

    services: Services

    async def plan(self, ask: ImportAsk, server: ServerRecord) -> Planned:
        """What importing ``ask`` over ``server`` would make (nothing stored or fetched)."""
        aois = aois_of(ask.aois)
        resolution = server_resolution(server, ask.resolution)
        with server_scope(server.id):
            source = await self.services.sources.get(server)
            check_aois_inside(aois, await server_bounds(source))
        crs = crs_for(ask.crs, aois)
        grid = plan_grid_for(aois, resolution, crs)
        image = self._image(source, grid, aois)
        cell_pixels = ask.max_cell_pixels or self.services.settings.max_cell_pixels
        answer = plan_answer(image, grid, aois, resolution, cell_pixels)
        answer.update(server_id=server.id, name=ask.name, method=ask.method)
        share = await quota_share(self.services, server, answer["requests"], answer["bytes"])
        answer["quota"] = share
        if ask.require_quota:
            check_fits(share, server.id)
        return Planned(grid, aois, answer)

    async def create(self, ask: ImportAsk, server: ServerRecord) -> ImageRecord:
        """Store the streaming image ``ask`` makes over ``server``."""
        planned = await self.plan(ask, server)
        grid = planned.grid
        t = grid.transform
        return await self.services.catalog.images.create(
            NewImage(
                name=ask.name,
                server_id=server.id,
                server_updated_at=server.updated_at,
                crs=crs_text(grid.crs),
                transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                width=int(grid.width),
                height=int(grid.height),
                resolution_m=float(planned.answer["resolution"]),
                aois=planned.aois.to_geojson(),
            )
        )

    async def full_read_cost(self, record: ImageRecord, server: ServerRecord) -> tuple[int, int]:
        """Upstream requests and bytes of reading all of ``record`` (nothing is fetched)."""
        grid, aois = parsed_image(record)
        with server_scope(server.id):
            source = await self.services.sources.get(server)
        estimate = self._image(source, grid, aois).estimate(grid.as_grid())
        return int(estimate.requests), int(estimate.bytes)

    async def read(
        self, record: ImageRecord, server: ServerRecord, ask: ReadAsk, detector: float | None
    ) -> ImageRead:
        """Read ``ask`` of the image over its ``server``, after the guard and the budgets."""
        result, _ = await self.read_then(record, server, ask, detector, lambda rgba, grid: None)
        return result

    async def read_then(
        self,
        record: ImageRecord,
        server: ServerRecord,
        ask: ReadAsk,
        detector: float | None,
        finish: Callable[[np.ndarray, Grid], T],
        allocate: Allocate | None = None,
    ) -> tuple[ImageRead, T]:
        """:meth:`read`, and ``finish`` (an encoder) of its pixels in the mosaic's executor job.

        ``allocate``: the encoder's buffer for the pixels (see :meth:`StreamingImage.read_then`).
        """
        grid, aois = parsed_image(record)
        with server_scope(server.id):
            source = await self.services.sources.get(server)
            image = self._image(source, grid, aois)
            view = view_grid(image, ask)
            estimate = image.estimate(view)
            try:
                check_resolution(
                    estimate.ground_resolution,
                    detector,
                    self.services.settings.guard_max_ratio,
                    estimate,
                    record.resolution_m,
                )
            except ResolutionTooHigh as exc:
                self.services.metrics.count_guard_refusal()
                raise _with_fix(exc, record, server, detector) from None
            self._check_budget(view, int(estimate.requests))
            result = await image.read_then(view, finish, allocate)
            self.services.metrics.count_read()
        return result

    def _image(self, source: Any, grid: ImageGrid, aois: Any) -> StreamingImage:
        return StreamingImage(source, grid, aois, self.services.executor, self.services.read_limits)

    def _check_budget(self, view: Grid, requests: int) -> None:
        limits = self.services.read_limits
        pixels = int(view.width) * int(view.height)
        if pixels > limits.max_pixels:
            raise ReadTooLarge(
                f"the read is {view.width}x{view.height} px, past the limit of "
                f"{limits.max_pixels} px (max_read_pixels)",
                hint="read a smaller window, or decimate it (out_width/out_height, resolution)",
                pixels=pixels,
                max_pixels=limits.max_pixels,
            )
        if requests > limits.max_requests:
            raise ReadTooLarge(
                f"the read needs {requests} upstream requests, past the limit of "
                f"{limits.max_requests} (max_read_requests)",
                hint="read a smaller area or at a coarser resolution",
                requests=requests,
                max_requests=limits.max_requests,
            )


def view_grid(image: StreamingImage, ask: ReadAsk) -> Grid:
    """The output grid of ``ask`` over ``image``."""
    grid: Grid
    if isinstance(ask, WindowAsk):
        grid = image.window(
            ask.col_off,
            ask.row_off,
            ask.width,
            ask.height,
            out_width=ask.out_width,
            out_height=ask.out_height,
        )
    elif isinstance(ask, BBoxAsk):
        grid = image.bbox(
            BBox(*ask.bbox), ask.crs, width=ask.width, height=ask.height, resolution=ask.resolution
        )
    elif isinstance(ask, TileAsk):
        grid = image.tile(tiling.web_mercator_tms(), ask.z, ask.x, ask.y)
    elif isinstance(ask, PreviewAsk):
        grid = image.preview(max_size=ask.max_size)
    return grid


def _with_fix(
    exc: ResolutionTooHigh, image: ImageRecord, server: ServerRecord, detector: float | None
) -> ResolutionTooHigh:
    """The guard's refusal, with the exact calls that fix it in the hint."""
    detector_res = detector if detector is not None else image.resolution_m
    exc.hint = (
        f"read at the detector's resolution ({detector_res} m/px: e.g. the bbox route with "
        f"resolution, or a window with out_width/out_height); or duplicate the server at "
        f"that resolution and import again: POST /servers/{server.id}/duplicate "
        f'{{"resolution": {detector_res}}}, then POST /imports {{"server_id": <the new id>, '
        f'"name": "{image.name} @ {detector_res} m", "aois": <the aois of GET /images/{image.id}>}}'
    )
    exc.extra.setdefault("image_id", image.id)
    exc.extra.setdefault("server_id", server.id)
    exc.extra.setdefault("image_resolution", image.resolution_m)
    exc.extra.setdefault("detector_resolution", detector)
    return exc


# Image records never change (the catalog has no update of one; ids are random, never
# reused): a read reuses their grid and parsed AOIs, ~0.4 ms of the event loop a read, and
# the grid's CRS keeps its cached WKT for the ground-resolution and AOI lookups.
_PARSED: LRUCache[tuple[Any, ...], tuple[ImageGrid, AOIs]] = LRUCache(maxsize=64)


def parsed_image(record: ImageRecord) -> tuple[ImageGrid, AOIs]:
    """The image's grid and its AOIs, parsed once per record."""
    key = (record.id, record.crs, record.transform, record.width, record.height)
    found = _PARSED.get(key)
    if found is None:
        found = _PARSED[key] = (image_grid(record), aois_of(record.aois))
    return found
