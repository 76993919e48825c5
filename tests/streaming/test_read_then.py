"""StreamingImage.read_then: the read's masked pixels handed to a blocking step, in one job.

The AOI mask is drawn in its own executor job while the tiles come, tiles are pasted as
they arrive, and the rest of the mosaic, the mask's application and the step run in one
last job (the jobs are recorded); the step sees exactly the pixels ``read`` returns; a
read that misses every AOI still gets it.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from rasterio.transform import Affine

from streaming import grid as tiling
from streaming.image import StreamingImage, plan_grid
from streaming.mask import aoi_mask
from streaming.mosaic import Grid
from streaming.reader import ReadLimits
from tests.groundtruth import CENTER_LAT, GT_RES
from tests.streaming.test_cog import AOI, GroundTruthTiles


class CountingExecutor(ThreadPoolExecutor):
    """An executor that counts the jobs it is given."""

    def __init__(self) -> None:
        super().__init__(2)
        self.jobs: list[str] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.jobs.append(getattr(fn, "__name__", type(fn).__name__))
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def counting():
    executor = CountingExecutor()
    yield executor
    executor.shutdown()


def image_over(renderer, executor) -> StreamingImage:
    res = GT_RES * math.cos(math.radians(CENTER_LAT))
    grid = plan_grid(AOI, res, tiling.WEB_MERCATOR_CRS)
    return StreamingImage(GroundTruthTiles(renderer), grid, AOI, executor, ReadLimits())


async def test_the_step_gets_the_masked_read_in_the_mosaic_job(renderer, counting):
    image = image_over(renderer, counting)
    # across the AOI's west edge: some pixels masked, some kept
    output = Grid(image.grid.crs, image.grid.transform * Affine.translation(-100, 100), 300, 200)
    expected = await image.read(output)
    seen: list[tuple[np.ndarray, Grid, str]] = []

    def step(rgba: np.ndarray, grid: Grid) -> int:
        seen.append((rgba.copy(), grid, threading.current_thread().name))
        return 7

    counting.jobs = []
    result, done = await image.read_then(output, step)
    assert done == 7 and len(seen) == 1
    first, *ahead, last = counting.jobs
    assert first == "plan_mask"  # drawn while the tiles come
    assert ahead and set(ahead) == {"paste_ahead"}  # tiles pasted as they arrive
    assert last == "work"  # the rest of the mosaic, the mask and the step: one job
    rgba, grid, thread = seen[0]
    assert grid == output and thread != threading.current_thread().name
    np.testing.assert_array_equal(rgba, result.rgba)
    np.testing.assert_array_equal(result.rgba, expected.rgba)
    inside = aoi_mask(AOI, output)
    assert inside.any() and not inside.all()
    assert (result.rgba[:, ~inside] == 0).all() and (result.rgba[3, inside] == 255).all()


async def test_a_read_outside_every_aoi_still_gets_the_step(renderer, counting):
    image = image_over(renderer, counting)
    grid = image.grid
    far = Grid(grid.crs, grid.transform * Affine.translation(grid.width * 3, 0), 64, 64)
    result, done = await image.read_then(far, lambda rgba, g: int(rgba.sum()))
    assert done == 0 and result.requests == 0 and result.rgba.shape == (4, 64, 64)
