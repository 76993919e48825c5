"""Helpers of the job-kind tests: services of a test app, an image over the fake XYZ server,
running a kind's cells directly (no runner), and reading the cells back."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer

from proxy.jobs.kinds import CellDone, CellWork, PlannedCell
from proxy.keys import SERVICES
from proxy.services import Services
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.proxy.tile_helpers import add_server

RES = 4.777314267823516 * math.cos(math.radians(CENTER_LAT))  # zoom-15 pixels on the ground
# An L in lon/lat (a wide foot, a narrow leg up the west side), off the ground truth's
# centre: its edges cut through cells, and the cells right of the leg are left out.
W, S, E, N = CENTER_LON - 0.0121, CENTER_LAT - 0.0093, CENTER_LON + 0.0112, CENTER_LAT + 0.0097
M, X = CENTER_LAT - 0.0021, CENTER_LON - 0.0043  # top of the foot, east side of the leg
AOI = {"type": "Polygon", "coordinates": [[[W, S], [E, S], [E, M], [X, M], [X, N], [W, N], [W, S]]]}


def services_of(api: Any) -> Services:
    services: Services = api.server.app[SERVICES]
    return services


async def import_image(api: Any, base: str, name: str = "gt", aoi: Any = AOI) -> dict[str, Any]:
    """A server over the fake XYZ upstream at ``base`` and a streaming image over ``aoi``."""
    url = base + "/a/tiles/{z}/{x}/{y}.png"
    server_id = await add_server(api, {"type": "xyz", "url": url, "resolution": RES})
    resp = await api.post("/imports", json={"server_id": server_id, "name": name, "aois": aoi})
    assert resp.status == 201, await resp.text()
    image: dict[str, Any] = await resp.json()
    return image


def work(cell: PlannedCell, params: dict[str, Any], job_id: str = "job0123456789", attempt: int = 1,
         kind: str = "materialize", server_id: str = "") -> CellWork:  # fmt: skip
    return CellWork(
        job_id=job_id,
        kind=kind,
        params=params,
        server_id=server_id,
        index=cell.index,
        attempt=attempt,
        spec=cell.spec,
    )


async def run_all(kind: Any, services: Services, cells: list[PlannedCell], params: dict[str, Any],
                  job_id: str = "job0123456789") -> list[CellDone]:  # fmt: skip
    progressed: list[int] = []
    done = [
        await kind.run_cell(services, work(c, params, job_id), progressed.append) for c in cells
    ]
    assert sum(progressed) == sum(d.bytes_written for d in done)
    return done


def read_cell(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """(RGB, dataset mask, open-time profile with transform/crs/tags) of a cell file."""
    with rasterio.open(path) as src:
        info = {"transform": src.transform, "crs": src.crs, "tags": src.tags(),
                "width": src.width, "height": src.height, "profile": src.profile}  # fmt: skip
        return src.read(), src.dataset_mask(), info


def aoi_mask_by_hand(transform: Any, width: int, height: int) -> np.ndarray:
    """Pixels whose centre lies inside the AOI rectangle (a rectangle in Web Mercator too)."""
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    (x0, x1, xl), (y0, y1, ym) = to_merc.transform([W, E, X], [S, N, M])
    cols = transform.c + (np.arange(width) + 0.5) * transform.a
    rows = transform.f + (np.arange(height) + 0.5) * transform.e
    foot = ((rows > y0) & (rows < ym))[:, None] & ((cols > x0) & (cols < x1))[None, :]
    leg = ((rows > y0) & (rows < y1))[:, None] & ((cols > x0) & (cols < xl))[None, :]
    return foot | leg
