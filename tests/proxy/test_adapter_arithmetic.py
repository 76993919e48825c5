"""Adapters' tile and zoom arithmetic at its edges: the cases mutation testing found unguarded.

Real loopback fakes (tests/upstreams/), expected pixels from the ground truth and
expected indices by hand; see docs/testing.md for the mutants these kill.
"""

from __future__ import annotations

import math

import aiohttp
import numpy as np
import pyproj
import pytest
from rasterio.crs import CRS

from proxy.upstream.arcgis import ArcGISExportSource, open_arcgis
from proxy.upstream.crs import corner_in_axis_order, meters_per_unit
from proxy.upstream.registry import parse_config
from proxy.upstream.wmts import open_wmts
from proxy.upstream.xyz import XYZSource
from streaming.decode import decode_rgba
from streaming.encode import encode_png
from streaming.reader import SourceReader
from streaming.resample import crop_tile, downsample_tiles
from streaming.types import BBox, TileIndex
from tests.groundtruth import (
    CENTER_LAT,
    CENTER_LON,
    assert_pixels_match,
    expected,
    preview_grid,
)
from tests.upstreams.arcgis import SERVICES, STATE, arcgis_app, mercator_tile_info
from tests.upstreams.wmts import wmts_app
from tests.upstreams.xyz import xyz_app


def xyz(url: str, **extra):
    return parse_config({"type": "xyz", "name": "t", "url": url, **extra})


def wmts(url: str, **extra):
    return parse_config({"type": "wmts", "name": "w", "url": url, **extra})


def arcgis(url: str, **extra):
    return parse_config({"type": "arcgis", "name": "t", "url": url, **extra})


async def test_xyz_serves_its_min_zoom(serve, renderer, ground_truth, upstream_ctx):
    # 10 m/px at 46.5 deg N is zoom 14 (cell 9.55 m in Mercator = 6.6 m on the ground is
    # finer than 10 / cos(46.52) = 14.5 m; zoom 13's 19.1 m is not): the range's only zoom.
    base = await serve(xyz_app(renderer))
    source = XYZSource(xyz(base + "/a/tiles/{z}/{x}/{y}.png", min_zoom=14), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 128)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert_pixels_match(result.rgba, expected(ground_truth, output))


def test_a_degree_is_measured_on_the_crs_own_ellipsoid():
    # WMTS: cell size = scale denominator x 0.28 mm / metres per unit; a degree of NAD27
    # (Clarke 1866, a = 6378206.4 m) is longer than a degree of WGS84 (a = 6378137 m).
    nad27 = pyproj.CRS.from_epsg(4267)
    assert meters_per_unit(nad27) == pytest.approx(2 * math.pi * 6378206.4 / 360, rel=1e-12)
    wgs84 = pyproj.CRS.from_epsg(4326)
    assert meters_per_unit(wgs84) == pytest.approx(2 * math.pi * 6378137.0 / 360, rel=1e-12)
    assert meters_per_unit(pyproj.CRS.from_epsg(2056)) == 1.0


@pytest.mark.parametrize(
    ("corner", "code", "inverted", "expected"),
    [
        # EPSG:4326 is lat,lon: a corner at the pole is valid as written, whatever its lon.
        ((90.0, -10.0), 4326, True, (90.0, -10.0)),
        # A lon just past 90 written first is still a lon: swap it back.
        ((-90.5, 30.0), 4326, True, (30.0, -90.5)),
        # CRS:84 is lon,lat: a corner written lat,lon (|lon| > 90 second) is swapped back.
        ((90.0, -180.0), "OGC:CRS84", False, (-180.0, 90.0)),
        ((-180.0, 90.0), "OGC:CRS84", False, (-180.0, 90.0)),
    ],
)
def test_wmts_corner_axis_order_by_hand(corner, code, inverted, expected):
    crs = pyproj.CRS.from_user_input(code)
    assert corner_in_axis_order(corner, crs, inverted) == expected


# --- ArcGIS caches that skip levels ---------------------------------------------------------

HALF = math.pi * 6378137  # half the Web Mercator extent


def center_tile(z: int) -> TileIndex:
    """The Web Mercator tile holding the ground truth's centre, by hand."""
    x, y = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(CENTER_LON, CENTER_LAT)
    span = 2 * HALF / 2**z
    return TileIndex(math.floor((x + HALF) / span), math.floor((HALF - y) / span), z)


async def gappy(serve, renderer, monkeypatch, levels: list[int]):
    """An ArcGIS tile cache holding only ``levels``, and its tile URL prefix."""
    info = {**SERVICES["Sparse/MapServer"], "tileInfo": mercator_tile_info(levels)}
    monkeypatch.setitem(SERVICES, "Gappy/MapServer", info)
    app = arcgis_app(renderer)
    url = await serve(app) + "/arcgis/rest/services/Gappy/MapServer"
    return app[STATE], url


def levels_asked(state) -> set[int]:
    return {
        int(s.url.split("/tile/")[1].split("/")[0]) for s in state.requests if "/tile/" in s.url
    }


async def test_a_level_two_above_the_next_cached_one_is_built_from_it(
    serve, renderer, ground_truth, upstream_ctx, monkeypatch
):
    # Levels 10 and 16 only; a read at zoom 14 takes 4 x 4 tiles of 16 (the gap limit).
    state, url = await gappy(serve, renderer, monkeypatch, [10, 16])
    source = await open_arcgis(arcgis(url), upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 128)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert result.zoom == 14
    assert levels_asked(state) == {16}
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)


async def test_a_level_far_above_the_next_cached_one_is_cropped_from_the_nearest_coarser(
    serve, renderer, upstream_ctx, monkeypatch
):
    # Levels 10, 11 and 16: zoom 13 is 3 above 16's gap limit, so it is a quarter of a
    # quarter of its level-11 parent (d = 2, n = 4), each pixel repeated 4 x 4.
    state, url = await gappy(serve, renderer, monkeypatch, [10, 11, 16])
    source = await open_arcgis(arcgis(url), upstream_ctx)
    assert (source.min_zoom, source.max_zoom) == (10, 16)
    tile = center_tile(13)
    built = await source.fetch_tile(tile)
    assert built is not None and levels_asked(state) == {11}
    parent = center_tile(11)
    assert (parent.x, parent.y) == (tile.x // 4, tile.y // 4)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/tile/11/{parent.y}/{parent.x}") as resp:
            whole = decode_rgba(await resp.read(), max_pixels=1 << 20)
    i, j = tile.x - 4 * parent.x, tile.y - 4 * parent.y
    cell = whole[:, j * 64 : (j + 1) * 64, i * 64 : (i + 1) * 64]
    oracle = np.repeat(np.repeat(cell, 4, axis=1), 4, axis=2)
    assert (decode_rgba(built.data, max_pixels=1 << 20) == oracle).all()


async def test_the_first_and_last_cached_levels_are_served(
    serve, renderer, upstream_ctx, monkeypatch
):
    _, url = await gappy(serve, renderer, monkeypatch, [10, 12, 16])
    source = await open_arcgis(arcgis(url), upstream_ctx)
    async with aiohttp.ClientSession() as session:
        for z in (10, 16):
            tile = center_tile(z)
            got = await source.fetch_tile(tile)
            async with session.get(f"{url}/tile/{z}/{tile.y}/{tile.x}") as resp:
                assert got is not None and got.data == await resp.read()


# --- rebuilt tiles' colours, exactly --------------------------------------------------------


def _rgba(r: int, g: int, b: int, a: int, size: int = 2) -> np.ndarray:
    tile = np.empty((4, size, size), dtype=np.uint8)
    tile[:] = np.array([r, g, b, a], dtype=np.uint8)[:, None, None]
    return tile


def test_downsampled_colours_are_rounded_alpha_weighted_means():
    # Children of 2 x 2 px, n = 2: each output pixel averages a 2 x 2 block of the 4 x 4
    # mosaic, here one whole child.
    kids = [_rgba(200, 0, 10, 255), _rgba(0, 0, 0, 255), _rgba(7, 1, 2, 128), None]
    out = decode_rgba(
        downsample_tiles([encode_png(k) if k is not None else None for k in kids], 2, 2, 1 << 20),
        max_pixels=1 << 20,
    )
    # Pixel (0, 0) covers child 0's 2 x 2 block: its colour, alpha 255.
    assert out[:, 0, 0].tolist() == [200, 0, 10, 255]
    assert out[:, 0, 1].tolist() == [0, 0, 0, 255]  # black stays 0
    # Child 2, alpha 128: premultiplied sum 4 x 7 x 128/255, divided by the summed alpha
    # 4 x 128, times 255: colour 7, 1, 2; alpha round(4 x 128 / 4) = 128.
    assert out[:, 1, 0].tolist() == [7, 1, 2, 128]
    assert out[3, 1, 1] == 0


def test_downsampled_alpha_and_colour_round_to_nearest():
    # One 2 x 2 block: alphas 255, 255, 255, 2 -> alpha 767 / 4 = 191.75 -> 192 (truncation
    # would give 191); colours 200, 201, 201 and a black under alpha 2 -> premultiplied
    # 602, times 255 / 767 -> 200.1 -> 200.
    tile = np.zeros((4, 2, 2), dtype=np.uint8)
    tile[:, 0, 0] = [200, 200, 200, 255]
    tile[:, 0, 1] = [201, 201, 201, 255]
    tile[:, 1, 0] = [201, 201, 201, 255]
    tile[:, 1, 1] = [0, 0, 0, 2]
    small = decode_rgba(downsample_tiles([encode_png(tile)] * 4, 2, 2, 1 << 20), max_pixels=1 << 20)
    assert small[:, 0, 0].tolist() == [200, 200, 200, 192]


def test_cropped_cell_is_repeated_on_both_axes():
    tile = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    tile[3] = 255
    crop = decode_rgba(crop_tile(encode_png(tile), 2, 1, 0, 8, 1 << 20), max_pixels=1 << 20)
    cell = tile[:, 0:4, 4:8]
    assert crop.shape == (4, 8, 8)
    assert (crop == np.repeat(np.repeat(cell, 2, axis=1), 2, axis=2)).all()


# --- WMTS tile indices at the edges of the matrix and of the zoom range -----------------------


async def test_wmts_asks_for_every_tile_inside_the_matrix_and_none_outside(
    serve, renderer, upstream_ctx
):
    # GoogleMapsCompatible of layer lausanne declares no TileMatrixSetLimits: matrix z is
    # 2**z x 2**z tiles, zooms 0..16, and only the matrix bounds guard the requests.
    base = await serve(wmts_app(renderer))
    source = await open_wmts(wmts(base + "/wmts/1.0.0/WMTSCapabilities.xml"), upstream_ctx)
    assert (source.min_zoom, source.max_zoom) == (0, 16)
    inside = [(0, 0, 0), (0, 0, 16), (2**16 - 1, 2**16 - 1, 16), (3, 0, 2), (0, 3, 2)]
    outside = [(4, 0, 2), (0, 4, 2), (-1, 0, 2), (0, -1, 2), (0, 0, 17), (0, 0, -1)]
    for x, y, z in inside:
        request = source.request_for(TileIndex(x, y, z))
        assert request is not None, (x, y, z)
        assert request[0].endswith(f"/{z}/{y}/{x}.png"), request
    for x, y, z in outside:
        assert source.request_for(TileIndex(x, y, z)) is None, (x, y, z)


async def test_wmts_zoom_range_of_the_config(serve, renderer, upstream_ctx):
    base = await serve(wmts_app(renderer))
    url = base + "/wmts/1.0.0/WMTSCapabilities.xml"
    source = await open_wmts(wmts(url, min_zoom=3, max_zoom=9), upstream_ctx)
    assert (source.min_zoom, source.max_zoom) == (3, 9)
    assert source.request_for(TileIndex(0, 0, 3)) is not None
    assert source.request_for(TileIndex(0, 0, 9)) is not None
    assert source.request_for(TileIndex(0, 0, 2)) is None
    assert source.request_for(TileIndex(0, 0, 10)) is None
    single = await open_wmts(wmts(url, min_zoom=5, max_zoom=5), upstream_ctx)
    assert (single.min_zoom, single.max_zoom) == (5, 5)


async def test_arcgis_export_params_follow_the_service_kind(serve, renderer, upstream_ctx):
    app = arcgis_app(renderer)
    services = await serve(app) + "/arcgis/rest/services/"
    bbox = BBox(1.0, 2.0, 3.0, 4.0)
    image = await open_arcgis(arcgis(services + "Ortho/ImageServer"), upstream_ctx)
    assert isinstance(image, ArcGISExportSource)
    params = image.params(bbox, CRS.from_epsg(3857), 30, 20)
    assert params["bbox"] == "1.0,2.0,3.0,4.0" and params["size"] == "30,20"
    assert (params["format"], params["interpolation"]) == ("png", "RSP_BilinearInterpolation")
    assert "transparent" not in params
    mapserver = await open_arcgis(arcgis(services + "Dynamic/MapServer"), upstream_ctx)
    assert isinstance(mapserver, ArcGISExportSource)
    params = mapserver.params(bbox, CRS.from_epsg(3857), 30, 20)
    assert (params["format"], params["transparent"]) == ("png32", "true")
    assert "interpolation" not in params


def test_a_josm_zoom_offset_placeholder_shifts_only_the_level() -> None:
    # {zoom+1} / {zoom-1} as JOSM writes them: the level sent is z +/- 1, columns and rows
    # stay those of the tile (stored configs normalize them into zoom_offset; fill must
    # still honour a template parsed as written).
    from proxy.upstream import templates
    from streaming.types import TileIndex

    tile = TileIndex(33, 22, 6)
    plus = templates.fill(templates.parse("http://h/{zoom+1}/{x}/{y}.png"), tile)
    minus = templates.fill(templates.parse("http://h/{zoom-1}/{x}/{y}.png"), tile, zoom_offset=-1)
    assert plus == "http://h/7/33/22.png"
    assert minus == "http://h/4/33/22.png"
