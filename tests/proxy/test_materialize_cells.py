"""The materialize kind cell by cell against the ground truth (plan, run_cell, finish)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from proxy.jobs.materialize import MaterializeKind
from proxy.jobs.outputs import outputs_root
from streaming.mosaic import Grid
from tests.groundtruth import MERCATOR, best_shift, expected
from tests.proxy.job_helpers import aoi_mask_by_hand, import_image, read_cell, run_all, services_of
from tests.upstreams.xyz import PATHS, xyz_app

JOB = "job0123456789"


@pytest.fixture
async def upstream(aiohttp_server, renderer):
    app = xyz_app(renderer)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


def assert_cell_matches(path: Path, ground_truth: Path, tolerance: float) -> np.ndarray:
    """The cell's pixels land on the ground truth on its own geotransform; its mask is exact."""
    rgb, mask, info = read_cell(path)
    oracle = expected(
        ground_truth, Grid(MERCATOR, info["transform"], info["width"], info["height"])
    )
    inside = aoi_mask_by_hand(info["transform"], info["width"], info["height"])
    assert np.array_equal(mask == 255, inside), "the mask is not the AOI's (pixel-centre rule)"
    if tolerance < 8:  # lossless: black outside; JPEG rings a little across the edge
        assert (rgb[:, ~inside] == 0).all()
    truth = np.where(inside, oracle, 0)  # outside the AOI both are 0
    ys, xs = np.nonzero(inside)
    box = np.s_[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if min(np.ptp(ys), np.ptp(xs)) > 16:
        assert best_shift(rgb[box], truth[box]) == (0, 0), "pixels are misplaced"
    errors = np.abs(rgb.astype(np.int16) - truth.astype(np.int16))[:, inside]
    assert float(errors.mean()) < tolerance, float(errors.mean())
    return mask


@pytest.mark.parametrize("compression, tolerance", [("deflate", 6), ("jpeg", 8), ("zstd", 6)])
async def test_every_cell_is_a_valid_cog_on_the_ground_truth(
    api, upstream, ground_truth, compression, tolerance
):
    services = services_of(api)
    image = await import_image(api, upstream[1], name="../Gt: north/west")
    kind = MaterializeKind()
    params = {"image_id": image["id"], "max_cell_pixels": 256, "compression": compression}
    cells = await kind.plan(services, params)
    assert len(cells) >= 6
    done = await run_all(kind, services, cells, params, JOB)
    root = outputs_root(services.settings)
    folder = root / f"Gt_north_west-{JOB[:8]}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"Gt_north_west_{c.index}.tif" for c in cells
    ), "only the cells' files, no temporaries"
    origin = Affine(*image["transform"][:6])
    covered = 0
    for cell, result in zip(cells, done, strict=True):
        path = root / str(result.output)
        assert path.parent == folder and result.bytes_written == path.stat().st_size
        assert cog_validate(path) == (True, [], [])
        mask = assert_cell_matches(path, ground_truth, tolerance)
        covered += int((mask == 255).sum())
        _, _, info = read_cell(path)
        spec = cell.spec
        assert info["transform"] == origin * Affine.translation(spec["col_off"], spec["row_off"])
        assert (info["width"], info["height"]) == (spec["width"], spec["height"])
        assert info["crs"] == MERCATOR and info["profile"]["compress"] == compression
        tags = info["tags"]
        assert tags["IMAGE_ID"] == image["id"] and tags["SOURCE_SERVER_ID"] == image["server_id"]
        assert float(tags["RESOLUTION_M"]) == pytest.approx(image["resolution"], rel=1e-5)
        assert tags["SOURCE_SERVER_NAME"] == "tiles" and tags["CREATED_AT"]
        if compression == "jpeg":
            assert info["profile"]["photometric"].lower() == "ycbcr"
    whole = aoi_mask_by_hand(origin, image["width"], image["height"])
    assert covered == int(whole.sum()), "the cells' masks add up to the AOI exactly"


async def test_the_stac_collection_points_at_every_cell(api, upstream):
    services = services_of(api)
    image = await import_image(api, upstream[1])
    kind = MaterializeKind()
    params = {"image_id": image["id"], "max_cell_pixels": 512}
    cells = await kind.plan(services, params)
    done = await run_all(kind, services, cells, params, JOB)
    await kind.finish(services, JOB, params)
    folder = outputs_root(services.settings) / f"gt-{JOB[:8]}"
    collection = pystac.Collection.from_file(str(folder / "collection.json"))
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == sorted(Path(str(d.output)).stem for d in done)
    for item in items:
        asset = item.assets["data"]
        assert asset.roles == ["data"] and asset.media_type == pystac.MediaType.COG
        assert not Path(asset.href).is_absolute() or asset.href.startswith(str(folder))
        href = Path(asset.get_absolute_href() or "")
        assert href.parent == folder and href.exists()
        with rasterio.open(href) as src:
            assert item.properties["proj:shape"] == [src.height, src.width]
            assert item.properties["proj:transform"] == list(src.transform)[:6]
            assert item.properties["proj:code"] == "EPSG:3857"
        west, south, east, north = item.bbox
        assert 6.6 < west < east < 6.66 and 46.5 < south < north < 46.54
    raw = (folder / f"{items[0].id}.json").read_text()
    assert '"href": "./' in raw or f'"href": "{items[0].id}.tif"' in raw, "hrefs are relative"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


async def test_a_second_run_of_a_done_cell_fetches_nothing(api, upstream):
    """A cell renamed before a crash but not recorded done is whole: it is not fetched again."""
    app, base = upstream
    services = services_of(api)
    image = await import_image(api, base)
    kind = MaterializeKind()
    params = {"image_id": image["id"], "max_cell_pixels": 512}
    cells = await kind.plan(services, params)
    first = await run_all(kind, services, cells[:1], params, JOB)
    before = len(app[PATHS])
    again = await run_all(kind, services, cells[:1], params, JOB)
    assert len(app[PATHS]) == before
    assert again[0].bytes_written == first[0].bytes_written and first[0].upstream_requests > 0
