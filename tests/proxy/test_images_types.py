"""Image reads through the HTTP API for every source type, in EPSG:3857 and in UTM.

Each case imports an AOI with a hole around the ground truth's centre over one fake
upstream, checks the image grid against the test's own arithmetic (origin on a multiple
of the resolution, bounds covering the AOI), reads the whole image as ``tif`` (mask exact
by the pixel-centre rule, pixels where the ground truth has them) and a window as ``npy``
(pixels again), then reads that window again: zero upstream requests.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from streaming.mosaic import Grid
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.proxy.tile_helpers import add_server
from tests.upstreams.arcgis import STATE, arcgis_app
from tests.upstreams.wms import REQUESTS, wms_app
from tests.upstreams.wmts import HITS, wmts_app
from tests.upstreams.xyz import PATHS, xyz_app

RESOLUTION = 4.0  # ground m/px: between zoom 15 (3.3 m here) and zoom 14, so reads resample
OUTER, HOLE = 0.006, 0.0015  # half sides in degrees of the AOI and of its hole
UTM_32N = CRS.from_epsg(32632)  # Lausanne (6.63 E) lies in zone 32 (6..12 E)


def square(d: float) -> list[list[float]]:
    """A closed ring, half side ``d`` degrees, around the ground truth's centre."""
    x, y = CENTER_LON, CENTER_LAT
    return [[x - d, y - d], [x + d, y - d], [x + d, y + d], [x - d, y + d], [x - d, y - d]]


AOI = {"type": "Polygon", "coordinates": [square(OUTER), square(HOLE)[::-1]]}
AOI_SHAPE = shapely.Polygon(square(OUTER), [square(HOLE)])


# Each source: the fake app, the saved server's config, the count of upstream requests.
Counter = Callable[[Any], int]
SOURCES: dict[str, tuple[Callable[[Any], Any], Callable[[str], dict[str, Any]], Counter]] = {
    "xyz": (
        xyz_app,
        lambda base: {"type": "xyz", "url": base + "/a/tiles/{z}/{x}/{y}.png"},
        lambda app: len(app[PATHS]),
    ),
    "wms-1.1.1": (
        wms_app,
        lambda base: {"type": "wms", "url": base + "/wms", "version": "1.1.1", "crs": "EPSG:3857"},
        lambda app: len(app[REQUESTS]),
    ),
    "wms-1.3.0": (
        wms_app,
        lambda base: {"type": "wms", "url": base + "/wms", "version": "1.3.0", "crs": "EPSG:3857"},
        lambda app: len(app[REQUESTS]),
    ),
    "wmts": (
        wmts_app,
        lambda base: {
            "type": "wmts",
            "url": base + "/wmts/1.0.0/WMTSCapabilities.xml",
            "layer": "lausanne",
            "tile_matrix_set": "GoogleMapsCompatible",
        },
        lambda app: len(app[HITS]),
    ),
    "arcgis-tiled": (
        arcgis_app,
        lambda base: {"type": "arcgis", "url": base + "/arcgis/rest/services/Ortho/MapServer"},
        lambda app: len(app[STATE].requests),
    ),
    "arcgis-export": (
        arcgis_app,
        lambda base: {"type": "arcgis", "url": base + "/arcgis/rest/services/Ortho/ImageServer"},
        lambda app: len(app[STATE].requests),
    ),
}


def grid_by_hand(crs: CRS) -> tuple[Affine, int, int]:
    """The image grid from first principles: pixel size, origin snapped outward.

    Web Mercator pixels measure RESOLUTION on the ground at the AOI centre (1/cos(lat)
    CRS units); UTM pixels are RESOLUTION metres. The AOI outline is densified before
    projecting (parallels curve in UTM).
    """
    if crs.to_epsg() == 3857:
        res = RESOLUTION / math.cos(math.radians(CENTER_LAT))
    else:
        res = RESOLUTION
    to_crs = Transformer.from_crs(4326, crs, always_xy=True)
    ring = np.array(shapely.segmentize(shapely.Polygon(square(OUTER)), 1e-5).exterior.coords)
    xs, ys = to_crs.transform(ring[:, 0], ring[:, 1])
    col0, col1 = math.floor(min(xs) / res), math.ceil(max(xs) / res)
    row0, row1 = math.floor(min(ys) / res), math.ceil(max(ys) / res)
    return Affine(res, 0.0, col0 * res, 0.0, -res, row1 * res), col1 - col0, row1 - row0


def inside_by_hand(grid: Grid) -> np.ndarray:
    """True where a pixel's centre, taken back to lon/lat, lies inside the AOI."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width] + 0.5
    xs, ys = grid.transform * (cols, rows)
    lon, lat = Transformer.from_crs(grid.crs, 4326, always_xy=True).transform(xs, ys)
    inside: np.ndarray = shapely.contains_xy(AOI_SHAPE, lon, lat)
    return inside


def check_header_grid(resp: Any, crs: CRS, transform: Affine) -> None:
    """The read's georeferencing headers name the CRS and the transform the test expects."""
    assert CRS.from_user_input(resp.headers["X-CRS"]) == crs
    got = [float(v) for v in resp.headers["X-Transform"].split(",")]
    assert got == pytest.approx(list(transform)[:6], abs=1e-6)


@pytest.fixture(params=list(SOURCES))
async def source(request, serve, renderer):
    make_app, config, count = SOURCES[request.param]
    app = make_app(renderer)
    base = await serve(app)
    return request.param, app, config(base), count


async def import_over(api, source, crs_name: str) -> tuple[dict[str, Any], CRS]:
    """Import the AOI over ``source`` in ``crs_name``; the image and its CRS."""
    name, _, config, _ = source
    server_id = await add_server(api, config)
    body = {"server_id": server_id, "name": name, "aois": AOI, "resolution": RESOLUTION}
    resp = await api.post("/imports", json={**body, "crs": crs_name})
    image = await resp.json()
    assert resp.status == 201, image
    return image, UTM_32N if crs_name == "utm" else CRS.from_epsg(3857)


@pytest.mark.parametrize("crs_name", ["EPSG:3857", "utm"])
async def test_reads_land_on_the_ground_truth_masked(api, source, ground_truth, crs_name):
    name, app, _, count = source
    image, crs = await import_over(api, source, crs_name)
    body = {"server_id": image["server_id"], "name": name, "aois": AOI, "resolution": RESOLUTION}
    transform, width, height = grid_by_hand(crs)
    assert CRS.from_user_input(image["crs"]) == crs
    assert image["transform"][:6] == pytest.approx(list(transform)[:6], abs=1e-6)
    assert (image["width"], image["height"]) == (width, height)
    left, bottom, right, top = image["bounds"]
    outline = Transformer.from_crs(4326, crs, always_xy=True).transform_bounds(
        *AOI_SHAPE.bounds, densify_pts=21
    )
    assert left <= outline[0] and bottom <= outline[1] and right >= outline[2]
    assert top >= outline[3]

    # The whole image as GeoTIFF: georeferenced, masked by the pixel-centre rule, and it
    # costs the upstream exactly what the plan estimated.
    plan = await (await api.post("/imports/plan", json={**body, "crs": crs_name})).json()
    before = count(app)
    whole = await api.get(f"/images/{image['id']}/window/0,0,{width},{height}.tif")
    assert whole.status == 200, await whole.text()
    assert count(app) - before == plan["requests"] == int(whole.headers["X-Upstream-Requests"])
    with MemoryFile(await whole.read()) as mem, mem.open() as src:
        assert src.crs == crs and src.transform.almost_equals(transform, precision=1e-6)
        rgb, mask = src.read(), src.dataset_mask()
    grid = Grid(crs, transform, width, height)
    inside = inside_by_hand(grid)
    assert 0 < inside.sum() < inside.size and not inside[height // 2, width // 2]  # the hole
    np.testing.assert_array_equal(mask > 0, inside)
    oracle = expected(ground_truth, grid)
    oracle[:, ~inside] = 0
    rgb[:, ~inside] = 0
    assert_pixels_match(rgb, oracle)

    # A window inside the ring (top-left, clear of the hole) as NPY: every pixel has data.
    col, row, size = width // 10, height // 10, 64
    path = f"/images/{image['id']}/window/{col},{row},{size},{size}.npy"
    resp = await api.get(path)
    assert resp.status == 200, await resp.text()
    window = transform * Affine.translation(col, row)
    check_header_grid(resp, crs, window)
    rgba = np.load(io.BytesIO(await resp.read()))
    assert rgba.shape == (4, size, size)
    assert_pixels_match(rgba, expected(ground_truth, Grid(crs, window, size, size)))


@pytest.mark.parametrize("source", SOURCES, indirect=True)
async def test_a_second_read_of_a_window_makes_no_upstream_request(api, source):
    name, app, _, count = source
    image, _ = await import_over(api, source, "EPSG:3857")
    path = f"/images/{image['id']}/window/10,10,128,128.npy"
    first = await api.get(path)
    assert first.status == 200, await first.text()
    before = count(app)
    assert before > 0
    again = await api.get(path)
    assert again.status == 200
    assert await again.read() == await first.read()
    assert count(app) == before, f"{name}: the second read went upstream"


def swapped(ring: list[list[float]]) -> list[list[float]]:
    """The ring with each position written [lat, lon] (a classic mistake)."""
    return [[lat, lon] for lon, lat in ring]


@pytest.mark.parametrize(
    "source", ["wms-1.1.1", "wms-1.3.0", "wmts", "arcgis-tiled", "arcgis-export"], indirect=True
)
async def test_an_aoi_outside_the_servers_bounds_is_refused_with_a_hint(api, source):
    name, app, config, count = source
    server_id = await add_server(api, config)
    body = {"server_id": server_id, "name": name, "resolution": RESOLUTION}
    lausanne = {"type": "Polygon", "coordinates": [swapped(square(OUTER))]}
    paris = {"type": "Polygon", "coordinates": [[[2.3 + x - 6.63, y] for x, y in square(OUTER)]]}
    for route in ("/imports/plan", "/imports"):
        resp = await api.post(route, json={**body, "aois": lausanne})
        error = (await resp.json())["error"]
        assert resp.status == 400 and error["code"] == "invalid_aoi", error
        assert "outside the server's bounds" in error["message"]
        assert "[longitude, latitude]" in error["hint"] and "swapped" in error["hint"]
    resp = await api.post("/imports/plan", json={**body, "aois": paris})
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["code"] == "invalid_aoi", error
    assert "swapped" not in error["hint"] and "inside the server's bounds" in error["hint"]
    assert (await api.get("/images")).status == 200
    assert (await (await api.get("/images")).json())["images"] == []


async def test_xyz_servers_declare_the_world(api, serve, renderer):
    config = SOURCES["xyz"][1](await serve(xyz_app(renderer)))
    server_id = await add_server(api, config)
    body = {"server_id": server_id, "name": "far", "resolution": 1000.0}
    far = {"type": "Polygon", "coordinates": [swapped(square(OUTER))]}  # lon 46.5, lat 6.6
    resp = await api.post("/imports/plan", json={**body, "aois": far})
    assert resp.status == 200, await resp.text()


async def test_an_image_larger_than_one_read_can_be_imported(api, serve, renderer, settings):
    config = SOURCES["xyz"][1](await serve(xyz_app(renderer)))
    server_id = await add_server(api, config)
    body = {"server_id": server_id, "name": "big", "aois": AOI, "resolution": 0.25}
    resp = await api.post("/imports", json=body)
    image = await resp.json()
    assert resp.status == 201, image
    assert image["width"] * image["height"] > settings.max_read_pixels
    plan = await (await api.post("/imports/plan", json=body)).json()
    assert plan["requests"] > settings.max_read_requests  # read it window by window


def read_sizes(name: str, app: Any, since: int) -> list[int]:
    """What each upstream request since ``since`` asked for: a tile's zoom, or a bbox's width."""
    if name == "xyz":
        return [int(p.split("/")[3]) for p in app[PATHS][since:]]
    if name == "wmts":
        return [int(hit[3]) for hit in app[HITS][since:]]
    if name.startswith("wms"):
        return [int(r["WIDTH"]) for r in app[REQUESTS][since:] if "WIDTH" in r]
    urls = [seen.url for seen in app[STATE].requests[since:]]
    if name == "arcgis-tiled":
        return [int(url.split("/tile/")[1].split("/")[0]) for url in urls if "/tile/" in url]
    return [int(url.split("size=")[1].split("%2C")[0].split(",")[0]) for url in urls]


async def test_a_decimated_read_fetches_coarse_data_only(api, source):
    name, app, _, count = source
    image, _ = await import_over(api, source, "EPSG:3857")
    before = count(app)
    w, h = image["width"], image["height"]
    resp = await api.get(f"/images/{image['id']}/window/0,0,{w},{h}.png?out_width=32")
    assert resp.status == 200, await resp.text()
    sizes = read_sizes(name, app, before)
    assert sizes and len(sizes) == count(app) - before
    # 32 px over ~300 px of 4 m: ~38 m ground, 55 m Web Mercator pixels. Zoom 12 (38 m) is
    # the coarsest at least as fine (one tile holds the AOI); a bbox source asks for 32 px.
    tiled = name in ("xyz", "wmts", "arcgis-tiled")
    assert sizes == ([12] if tiled else [32])
