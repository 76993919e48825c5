"""The WMS adapter against a fake loopback WMS (1.1.1 and 1.3.0)."""

from __future__ import annotations

import pytest
from rasterio.crs import CRS

from proxy.errors import InvalidInput
from proxy.upstream.registry import parse_config
from proxy.upstream.wms import (
    GetMapSettings,
    WMSSource,
    bbox_param,
    describe_wms,
    getmap_url,
    open_wms,
    select_crs,
    select_format,
    split_url,
)
from proxy.upstream.wms_capabilities import WMSCapabilities, WMSLayer
from streaming.decode import decode_rgba
from streaming.errors import SourceBadResponse, SourceServiceException
from streaming.reader import SourceReader, preview_grid
from streaming.types import BBox
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.upstreams.wms import LONLAT_BOUNDS, MERCATOR_BOUNDS, REQUESTS, wms_app

MERCATOR = CRS.from_epsg(3857)
WGS84 = CRS.from_epsg(4326)


def wms_config(url: str, **extra):
    return parse_config({"type": "wms", "name": "t", "url": url, **extra})


def getmaps(app) -> list[dict[str, str]]:
    return [r for r in app[REQUESTS] if r.get("REQUEST", "").lower() == "getmap"]


@pytest.fixture
async def fake(serve, renderer):
    app = wms_app(renderer, require_map="lausanne")
    return app, await serve(app)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
async def test_pixels_land_on_the_ground_truth(fake, ground_truth, upstream_ctx, version, crs):
    app, base = fake
    # The user's URL carries a mapfile and OGC keys in lower case: MAP is kept, the rest set.
    url = f"{base}/wms?map=lausanne&service=WMS&request=GetCapabilities"
    source = await open_wms(wms_config(url, version=version, crs=crs), upstream_ctx)
    assert source.settings.version == version
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 256)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)

    requests = getmaps(app)
    assert requests and len(requests) == result.requests
    for r in requests:
        assert r["PATH"] == "/ows" and r["MAP"] == "lausanne"  # OnlineResource + user params
        assert r["VERSION"] == version
        assert r[("SRS" if version == "1.1.1" else "CRS")] == crs
        assert r["FORMAT"] == "image/png" and r["TRANSPARENT"] == "TRUE"
        assert int(r["WIDTH"]) <= 200 and int(r["HEIGHT"]) <= 150
    first = float(requests[0]["BBOX"].split(",")[0])
    if crs == "EPSG:4326":  # 1.3.0 puts latitude first
        assert first == pytest.approx(CENTER_LAT if version == "1.3.0" else CENTER_LON, abs=0.1)


async def test_the_fake_server_honours_the_axis_order(fake, upstream_ctx):
    """A lon,lat BBOX sent as 1.3.0 EPSG:4326 lands elsewhere: the pixel tests can fail."""
    _, base = fake
    config = wms_config(f"{base}/wms?map=lausanne", version="1.3.0", crs="EPSG:4326")
    source = await open_wms(config, upstream_ctx)
    d = 0.01
    bbox = BBox(CENTER_LON - d, CENTER_LAT - d, CENTER_LON + d, CENTER_LAT + d)
    params = source.getmap_params(bbox, WGS84, 64, 64)
    good = await source.connection.get_image(source.settings.url, params)
    swapped = {**params, "BBOX": ",".join(str(v) for v in bbox)}
    bad = await source.connection.get_image(source.settings.url, swapped)
    assert good is not None and bad is not None
    assert decode_rgba(good.data)[3].min() == 255
    assert decode_rgba(bad.data)[3].max() == 0


async def test_version_is_what_the_server_answers(serve, renderer, ground_truth, upstream_ctx):
    app = wms_app(renderer, versions=("1.1.1",))
    base = await serve(app)
    source = await open_wms(wms_config(f"{base}/wms"), upstream_ctx)
    assert app[REQUESTS][0]["VERSION"] == "1.3.0"  # asked for the newest...
    assert source.settings.version == "1.1.1"  # ...and followed the server
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 128)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    assert all("SRS" in r and "CRS" not in r for r in getmaps(app))


async def test_defaults_come_from_the_capabilities(fake, upstream_ctx):
    app, base = fake
    source = await open_wms(wms_config(f"{base}/wms?map=lausanne"), upstream_ctx)
    s = source.settings
    assert (s.layers, s.styles, s.format, s.version) == (("truth",), ("",), "image/png", "1.3.0")
    assert source.crs_list[:2] == [MERCATOR, WGS84]
    assert source.max_size == (200, 150)
    # A second open reuses the cached capabilities.
    await open_wms(wms_config(f"{base}/wms?map=lausanne"), upstream_ctx)
    assert len(app[REQUESTS]) == 1


async def test_large_reads_are_split_within_max_size(fake, ground_truth, upstream_ctx):
    app, base = fake
    config = wms_config(f"{base}/wms?map=lausanne", layers=["truth"], styles=["contrast"])
    source = await open_wms(config, upstream_ctx)
    output = preview_grid(CENTER_LAT, CENTER_LON, 6.0, 512)
    result = await SourceReader(source, upstream_ctx.executor).read(output)
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=10)
    requests = getmaps(app)
    assert result.requests == len(requests) == 12  # ceil(512/200) x ceil(512/150)
    assert all(int(r["WIDTH"]) <= 200 and int(r["HEIGHT"]) <= 150 for r in requests)
    assert {r["STYLES"] for r in requests} == {"contrast"}
    assert sum(int(r["WIDTH"]) for r in requests) == 512 * 4


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
async def test_service_exception_with_http_200_is_an_error(fake, upstream_ctx, version):
    _, base = fake
    source = await open_wms(wms_config(f"{base}/wms?map=lausanne", version=version), upstream_ctx)
    bbox = BBox(*MERCATOR_BOUNDS)
    with pytest.raises(SourceServiceException) as info:
        await source.fetch_bbox(bbox, MERCATOR, 300, 100)
    # The message is the exception's text, not raw XML (1.1.1 sends a DOCTYPE too).
    assert info.value.message.endswith("Image size 300x100 exceeds MaxWidth=200 MaxHeight=150")
    assert "<" not in info.value.message


async def test_layer_refused_by_getmap_fails_the_read(fake, upstream_ctx):
    _, base = fake
    source = await open_wms(
        wms_config(f"{base}/wms?map=lausanne", layers=["retired"]), upstream_ctx
    )
    output = preview_grid(CENTER_LAT, CENTER_LON, 10.0, 64)
    with pytest.raises(SourceServiceException, match="Layer 'retired' is not defined") as info:
        await SourceReader(source, upstream_ctx.executor).read(output)
    assert info.value.code == "upstream_service_exception"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"layers": ["truth", "roads"]},
            "unknown WMS layer(s) roads; the server has: truth, world",
        ),
        ({"styles": ["sepia"]}, "has no style 'sepia'; it has: default, contrast"),
        ({"format": "image/webp"}, "does not offer format 'image/webp'"),
        ({"crs": "EPSG:2056"}, "does not offer CRS EPSG:2056"),
        ({"crs": "EPSG:999999"}, "unknown CRS"),
    ],
    ids=["layer", "style", "format", "crs", "bad-crs"],
)
async def test_config_checked_against_the_capabilities(fake, upstream_ctx, extra, message):
    _, base = fake
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        await open_wms(wms_config(f"{base}/wms?map=lausanne", **extra), upstream_ctx)
    assert e.value.code == "invalid_input"


@pytest.mark.parametrize("version", ["1.1.1", "1.3.0"])
async def test_describe_lists_the_capabilities(fake, upstream_ctx, version):
    _, base = fake
    summary = await describe_wms(
        wms_config(f"{base}/wms?map=lausanne", version=version), upstream_ctx
    )
    assert summary["version"] == version and summary["title"] == "Fake WMS"
    assert summary["formats"] == ["image/jpeg", "image/png"]
    assert (summary["max_width"], summary["max_height"]) == (200, 150)
    truth, world, _ = summary["layers"]
    assert [layer["name"] for layer in summary["layers"]] == ["truth", "world", "retired"]
    assert truth["title"] == "Ground truth"
    assert [s["name"] for s in truth["styles"]] == ["default", "contrast"]
    assert {"EPSG:3857", "EPSG:4326"} <= set(truth["crs"]) and truth["crs"] == world["crs"]
    assert truth["wgs84_bounds"] == pytest.approx(list(LONLAT_BOUNDS))
    boxes = {b["crs"]: b["bbox"] for b in truth["bounding_boxes"]}
    assert boxes["EPSG:3857"] == pytest.approx(list(MERCATOR_BOUNDS))
    if version == "1.3.0":  # sent lat,lon; reported x,y
        assert boxes["EPSG:4326"] == pytest.approx(list(LONLAT_BOUNDS))


@pytest.mark.parametrize("path", ["/evil/lol", "/evil/xxe"])
async def test_entity_attacks_are_refused(fake, upstream_ctx, path):
    _, base = fake
    with pytest.raises(SourceBadResponse, match="DTD or entities") as info:
        await describe_wms(wms_config(base + path), upstream_ctx)
    assert "lol" not in info.value.message and "root:" not in info.value.message


def test_bbox_axis_order_comes_from_the_crs():
    bbox = BBox(6.5, 46.4, 6.7, 46.6)
    assert bbox_param(bbox, "EPSG:4326", "1.3.0") == "46.4,6.5,46.6,6.7"
    assert bbox_param(bbox, "EPSG:4326", "1.1.1") == "6.5,46.4,6.7,46.6"
    assert bbox_param(bbox, "CRS:84", "1.3.0") == "6.5,46.4,6.7,46.6"
    assert bbox_param(bbox, "urn:ogc:def:crs:EPSG::3785", "1.3.0") == "6.5,46.4,6.7,46.6"


def test_urls_keep_the_users_params():
    url = "https://h/cgi?MAP=/srv/a.map&Service=WMS&request=GetCapabilities&VERSION=1.1.1"
    assert split_url(url) == ("https://h/cgi", {"MAP": "/srv/a.map"}, "1.1.1")
    assert getmap_url(url, None) == "https://h/cgi?MAP=/srv/a.map"
    assert getmap_url(url, "https://o/wms?SERVICE=WMS&") == "https://o/wms?MAP=/srv/a.map"
    assert getmap_url(url, "https://o/wms?map=/b.map") == "https://o/wms?map=/b.map"
    assert getmap_url(url, "/other?") == "https://h/other?MAP=/srv/a.map"


def caps_with(formats=(), crs=()) -> tuple[WMSCapabilities, WMSLayer]:
    layer = WMSLayer("l", None, (), tuple(crs), (), None)
    return WMSCapabilities("1.3.0", None, (layer,), tuple(formats), None, None, None), layer


@pytest.mark.parametrize(
    ("formats", "chosen"),
    [
        (["image/jpeg", "image/png"], "image/png"),
        (["image/gif", "image/jpeg"], "image/jpeg"),
        (["image/svg+xml", "image/png; mode=8bit", "image/png8"], "image/png; mode=8bit"),
        (["application/pdf", "image/gif"], "image/gif"),
        ([], "image/png"),
    ],
)
def test_format_preference(formats, chosen):
    caps, _ = caps_with(formats=formats)
    assert select_format(wms_config("http://h/wms"), caps) == chosen


def test_crs_preference_and_aliases():
    _, layer = caps_with(crs=["EPSG:2056", "EPSG:4326", "EPSG:900913", "AUTO:42001"])
    pairs = select_crs(wms_config("http://h/wms"), [layer])
    assert [code for _, code in pairs] == ["EPSG:900913", "EPSG:4326", "EPSG:2056"]
    assert pairs[0][0] == MERCATOR  # the alias is Web Mercator, sent under the server's name
    chosen = select_crs(wms_config("http://h/wms", crs="EPSG:3857"), [layer])
    assert chosen == [(MERCATOR, "EPSG:900913")]


def test_jpeg_has_no_transparent_flag():
    settings = GetMapSettings(
        "http://h/wms", "1.1.1", ("a",), ("",), "image/jpeg", ((WGS84, "EPSG:4326"),), (10, 10)
    )
    source = WMSSource(None, settings)  # type: ignore[arg-type]  # no request is sent
    params = source.getmap_params(BBox(0, 0, 1, 1), WGS84, 10, 10)
    assert "TRANSPARENT" not in params and params["EXCEPTIONS"] == "application/vnd.ogc.se_xml"
    assert params["SRS"] == "EPSG:4326" and params["BBOX"] == "0.0,0.0,1.0,1.0"
    assert (params["WIDTH"], params["HEIGHT"], params["FORMAT"]) == ("10", "10", "image/jpeg")
