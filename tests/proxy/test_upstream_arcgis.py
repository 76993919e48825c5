"""The ArcGIS adapter against a fake ArcGIS Server on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.errors import InvalidInput
from proxy.upstream.arcgis import ArcGISExportSource, ArcGISTileSource, describe_arcgis, open_arcgis
from proxy.upstream.arcgis_auth import generate_token_url, service_roots
from proxy.upstream.arcgis_service import tile_scheme
from proxy.upstream.registry import parse_config
from streaming.decode import decode_rgba
from streaming.encode import encode_png
from streaming.errors import SourceAuthError, SourceUnsupported
from streaming.grid import web_mercator_tms
from streaming.reader import SourceReader, preview_grid
from streaming.resample import crop_tile, downsample_tiles
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.arcgis import (
    PASSWORD,
    SERVICES,
    STATE,
    SWISS_TILE_INFO,
    USER,
    arcgis_app,
    mercator_tile_info,
)

CENTER_TILE = TileIndex(*web_mercator_tms().tile(CENTER_LON, CENTER_LAT, 14))


def arcgis(url: str, **extra):
    return parse_config({"type": "arcgis", "name": "t", "url": url, **extra})


async def start(serve, renderer):
    app = arcgis_app(renderer)
    base = await serve(app)
    return app[STATE], base + "/arcgis/rest/services/"


async def read_preview(source, ctx, res=10.0, size=256):
    output = preview_grid(CENTER_LAT, CENTER_LON, res, size)
    return output, await SourceReader(source, ctx.executor).read(output)


# --- pure functions ---------------------------------------------------------------------


def test_service_and_token_urls():
    url = "https://h.example/arcgis/rest/services/Folder/Ortho/MapServer"
    assert service_roots(url) == ("https://h.example/arcgis/rest", "https://h.example/arcgis")
    assert generate_token_url("https://h/arcgis/tokens/") == "https://h/arcgis/tokens/generateToken"
    portal = "https://h/portal/sharing/rest/generateToken"
    assert generate_token_url(portal) == portal


def test_web_mercator_schemes_are_accepted_with_levels_starting_late_or_skipping():
    scheme = tile_scheme({"tileInfo": mercator_tile_info([3, 5, 6], 512)})
    assert (scheme.tile_size, scheme.levels) == (512, (3, 5, 6))


@pytest.mark.parametrize("wkid", [3857, 102100, 102113, 3785, 900913])
def test_every_web_mercator_wkid_is_accepted(wkid):
    info = {**mercator_tile_info(range(3)), "spatialReference": {"wkid": wkid}}
    assert tile_scheme({"tileInfo": info}).levels == (0, 1, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spatialReference": {"wkid": 2056}}, "wkid 2056"),
        ({"origin": {"x": -20037700.0, "y": 30241100.0}}, "origin"),
        ({"rows": 1024, "cols": 1024}, "1024x1024"),
        ({"format": "LERC"}, "LERC"),
        ({"lods": [{"level": 2, "resolution": 10000.0}]}, "level 2 has 10000.0 m/px"),
    ],
    ids=["wkid", "origin", "tile-size", "lerc", "lod"],
)
def test_other_schemes_are_unsupported(change, message):
    with pytest.raises(SourceUnsupported, match=message) as info:
        tile_scheme({"tileInfo": {**mercator_tile_info(range(5)), **change}})
    assert info.value.code == "unsupported"


def test_swiss_scheme_message_names_it():
    with pytest.raises(SourceUnsupported, match=r"tiling scheme in wkid 2056 \(origin 2420000.0"):
        tile_scheme({"tileInfo": SWISS_TILE_INFO})


def test_levels_rebuilt_from_finer_or_coarser_tiles():
    rng = np.random.default_rng(1)
    tiles = [rng.integers(0, 255, (4, 8, 8), dtype=np.uint8) for _ in range(4)]
    for tile in tiles:
        tile[3] = 255
    small = decode_rgba(downsample_tiles([encode_png(t) for t in tiles], 2, 8, 1 << 20))
    whole = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]).astype(np.float32)
    means = whole.reshape(4, 8, 2, 8, 2).mean(axis=(2, 4))
    assert np.abs(small.astype(np.float32) - means).max() <= 1
    # A missing child leaves its quarter transparent, not black-blended.
    half = decode_rgba(downsample_tiles([encode_png(tiles[0]), None, None, None], 2, 8, 1 << 20))
    assert half[3, :4, :4].min() == 255 and half[3, 4:, :].max() == 0
    # Colours under transparent pixels do not bleed into the average.
    edge = np.full((4, 8, 8), 200, dtype=np.uint8)
    edge[3] = 255
    edge[:3, :, ::2], edge[3, :, ::2] = 99, 0
    mixed = decode_rgba(downsample_tiles([encode_png(edge)] * 4, 2, 8, 1 << 20))
    assert (mixed[:3] == 200).all() and (np.abs(mixed[3].astype(int) - 128) <= 1).all()
    crop = decode_rgba(crop_tile(encode_png(tiles[0]), 4, 3, 1, 8, 1 << 20))
    assert (crop[:, ::4, ::4] == tiles[0][:, 2:4, 6:8]).all()


def test_config_validation():
    with pytest.raises(InvalidInput, match="MapServer or /ImageServer"):
        arcgis("http://h/arcgis/rest/services/X/FeatureServer")
    with pytest.raises(InvalidInput, match="jpgpng is for an ImageServer"):
        arcgis("http://h/arcgis/rest/services/X/MapServer", format="jpgpng")
    with pytest.raises(InvalidInput, match="format"):
        arcgis("http://h/arcgis/rest/services/X/ImageServer", format="lerc")
    assert arcgis("http://h/a/rest/services/X/ImageServer?f=json", format="JPGPNG").format == (
        "jpgpng"
    )


# --- tiled services ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "zoom", "tolerance"),
    [("Ortho/MapServer", 14, 8), ("Ortho512/MapServer", 13, 10), ("Sparse/MapServer", 14, 10)],
    ids=["256-png", "512-jpeg", "skipped-level"],
)
async def test_tiled_pixels_land_on_the_ground_truth(
    serve, renderer, ground_truth, upstream_ctx, service, zoom, tolerance
):
    state, services = await start(serve, renderer)
    source = await open_arcgis(arcgis(services + service), upstream_ctx)
    assert isinstance(source, ArcGISTileSource)
    output, result = await read_preview(source, upstream_ctx)
    assert result.zoom == zoom
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance)
    levels = {
        int(s.url.split("/tile/")[1].split("/")[0]) for s in state.requests if "/tile/" in s.url
    }
    assert levels == ({15} if service.startswith("Sparse") else {zoom})


async def test_tile_outside_the_data_is_none(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    source = await open_arcgis(arcgis(services + "Ortho/MapServer"), upstream_ctx)
    assert (source.min_zoom, source.max_zoom) == (0, 16)
    assert await source.fetch_tile(TileIndex(0, 0, 14)) is None
    assert await source.fetch_tile(TileIndex(0, 0, 17)) is None


async def test_non_web_mercator_cache_without_export_is_unsupported(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    with pytest.raises(SourceUnsupported, match="wkid 2056") as info:
        await open_arcgis(arcgis(services + "Swiss/ImageServer"), upstream_ctx)
    assert info.value.code == "unsupported"


async def test_lerc_cache_is_unsupported(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    with pytest.raises(SourceUnsupported, match="LERC"):
        await open_arcgis(arcgis(services + "Elevation/ImageServer"), upstream_ctx)
    disguised = await open_arcgis(arcgis(services + "Disguised/ImageServer"), upstream_ctx)
    with pytest.raises(SourceUnsupported, match="tiles are LERC") as info:
        await disguised.fetch_tile(CENTER_TILE)
    assert "JPEG" in (info.value.hint or "")


# --- export and exportImage -------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "endpoint", "parts"),
    [
        ("Ortho/ImageServer", "/exportImage?", 1),
        ("Small/ImageServer", "/exportImage?", 9),
        ("Dynamic/MapServer", "/export?", 1),
        ("SwissMap/MapServer", "/export?", 1),
    ],
    ids=["exportImage", "exportImage-split", "export", "other-scheme-falls-back-to-export"],
)
async def test_export_pixels_land_on_the_ground_truth(
    serve, renderer, ground_truth, upstream_ctx, service, endpoint, parts
):
    state, services = await start(serve, renderer)
    source = await open_arcgis(arcgis(services + service), upstream_ctx)
    assert isinstance(source, ArcGISExportSource)
    output, result = await read_preview(source, upstream_ctx)
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    exports = [s.url for s in state.requests if endpoint in s.url]
    assert len(exports) == result.requests == parts
    assert "bboxSR=3857" in exports[0] and "imageSR=3857" in exports[0]


# --- tokens -----------------------------------------------------------------------------


def assert_no_secret_in_urls(state):
    tokens = list(state.tokens)
    assert tokens
    for seen in state.requests:
        assert PASSWORD not in seen.url
        assert not any(token in seen.url for token in tokens), seen.url
        assert "token=" not in seen.url.lower()


@pytest.mark.parametrize("endpoint", ["server", "portal", "none"])
async def test_token_is_sent_in_a_header_never_in_a_url(
    serve, renderer, ground_truth, upstream_ctx, endpoint
):
    state, services = await start(serve, renderer)
    state.token_endpoint = endpoint
    config = arcgis(services + "Secure/Ortho/MapServer", credentials=f"{USER}:{PASSWORD}")
    source = await open_arcgis(config, upstream_ctx)
    output, result = await read_preview(source, upstream_ctx)
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    [generate] = [s for s in state.requests if "generateToken" in s.url]
    assert generate.method == "POST" and generate.form["username"] == USER
    assert generate.url.startswith("/portal/" if endpoint == "portal" else "/arcgis/tokens/")
    [token] = state.tokens
    service_requests = [s for s in state.requests if "/Secure/" in s.url]
    assert len(service_requests) == 1 + result.requests
    assert all(s.headers["X-Esri-Authorization"] == f"Bearer {token}" for s in service_requests)
    assert_no_secret_in_urls(state)
    # Another source of the same account reuses the token.
    await (await open_arcgis(config, upstream_ctx)).fetch_tile(CENTER_TILE)
    assert state.generated() == 1


@pytest.mark.parametrize("as_status", [False, True], ids=["json-200", "http-498"])
@pytest.mark.parametrize("service", ["Ortho/MapServer", "Ortho/ImageServer"])
async def test_rejected_token_is_renewed_once(
    serve, renderer, ground_truth, upstream_ctx, as_status, service
):
    state, services = await start(serve, renderer)
    state.auth_as_status = as_status
    state.reject_next_tokens = 1
    config = arcgis(services + "Secure/" + service, credentials=f"{USER}:{PASSWORD}")
    source = await open_arcgis(config, upstream_ctx)
    output, result = await read_preview(source, upstream_ctx)
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    assert state.generated() == 2
    assert_no_secret_in_urls(state)


async def test_token_rejected_twice_is_an_auth_error(serve, renderer, upstream_ctx):
    state, services = await start(serve, renderer)
    state.reject_next_tokens = 2
    config = arcgis(services + "Secure/Ortho/MapServer", credentials=f"{USER}:{PASSWORD}")
    with pytest.raises(SourceAuthError, match="refused a new token of user 'alice'"):
        await open_arcgis(config, upstream_ctx)
    assert state.generated() == 2


async def test_bad_credentials_are_an_auth_error_without_the_password(
    serve, renderer, upstream_ctx
):
    state, services = await start(serve, renderer)
    config = arcgis(services + "Secure/Ortho/MapServer", credentials=f"{USER}:{PASSWORD}-wrong")
    with pytest.raises(SourceAuthError, match="Invalid username or password") as info:
        await open_arcgis(config, upstream_ctx)
    assert info.value.code == "upstream_auth"
    for text in (str(info.value), info.value.message, info.value.hint or ""):
        assert PASSWORD not in text
    assert all(PASSWORD not in s.url for s in state.requests)


async def test_secured_service_without_credentials_says_to_set_them(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    with pytest.raises(SourceAuthError, match="499: Token Required") as info:
        await open_arcgis(arcgis(services + "Secure/Ortho/MapServer"), upstream_ctx)
    assert "credentials" in (info.value.hint or "")


# --- describe ---------------------------------------------------------------------------


async def test_describe(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    tiled = await describe_arcgis(arcgis(services + "Sparse/MapServer"), upstream_ctx)
    assert tiled["kind"] == "MapServer" and tiled["mode"] == "tiles"
    assert (tiled["scheme"], tiled["levels"], tiled["tile_size"]) == (
        "web-mercator",
        [10, 12, 13, 15, 16],
        256,
    )
    assert tiled["spatial_reference"] == 3857 and len(tiled["extent"]) == 4
    swiss = await describe_arcgis(arcgis(services + "SwissMap/MapServer"), upstream_ctx)
    assert (swiss["scheme"], swiss["mode"]) == ("unsupported", "export")
    assert "wkid 2056" in swiss["scheme_problem"]
    small = await describe_arcgis(arcgis(services + "Small/ImageServer"), upstream_ctx)
    assert (small["tiled"], small["mode"], small["max_image_size"]) == (False, "export", [100, 100])
    lerc = await describe_arcgis(arcgis(services + "Elevation/ImageServer"), upstream_ctx)
    assert lerc["mode"] is None and "LERC" in lerc["unsupported"]
    assert set(SERVICES) >= {"Sparse/MapServer", "SwissMap/MapServer"}


# --- service descriptions as Esri writes them ---------------------------------------------


async def test_tile_info_without_cache_flags_is_read_tile_by_tile(
    serve, renderer, ground_truth, upstream_ctx
):
    state, services = await start(serve, renderer)
    source = await open_arcgis(arcgis(services + "EsriTiles/MapServer"), upstream_ctx)
    assert isinstance(source, ArcGISTileSource)
    output, result = await read_preview(source, upstream_ctx)
    assert_pixels_match(result.rgba, expected(ground_truth, output))
    assert not any("/export" in seen.url for seen in state.requests)


async def test_tiles_only_service_in_another_scheme_is_never_exported(
    serve, renderer, upstream_ctx
):
    state, services = await start(serve, renderer)
    with pytest.raises(SourceUnsupported, match="TilesOnly") as info:
        await open_arcgis(arcgis(services + "EsriSwiss/MapServer"), upstream_ctx)
    assert "Web Mercator" in (info.value.hint or "")
    assert not any("/export" in seen.url for seen in state.requests)


async def test_lerc_is_detected_in_any_case_without_cache_flags(serve, renderer, upstream_ctx):
    _, services = await start(serve, renderer)
    with pytest.raises(SourceUnsupported, match="lerc2d"):
        await open_arcgis(arcgis(services + "EsriElevation/ImageServer"), upstream_ctx)
    described = await describe_arcgis(arcgis(services + "EsriElevation/ImageServer"), upstream_ctx)
    assert described["mode"] is None and "LERC" in described["unsupported"]
