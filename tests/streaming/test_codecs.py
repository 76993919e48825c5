"""streaming.codecs: round trips, format choice, checks before decoding, reduced scale, copies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from streaming import codecs
from streaming.errors import SourceBadResponse, SourceImageTooLarge
from streaming.mosaic import Grid, resize, warp
from streaming.reader import SourceReader, reduce_factor
from streaming.sources import FetchedImage
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected, preview_grid
from tests.streaming.test_reader import MemoryTiles, web_mercator


def smooth(height: int = 64, width: int = 96) -> np.ndarray:
    """A smooth RGBA pattern (JPEG-friendly), band-first, fully opaque."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = [100 + 80 * np.sin(xx / 9), 100 + 80 * np.cos(yy / 7), (xx + yy) % 200 + 20]
    return np.stack([*rgb, np.full((height, width), 255)]).astype(np.uint8)


def pil_decode(data: bytes) -> np.ndarray:
    """An independent decoder: (4, h, w) RGBA."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")).transpose(2, 0, 1)


@pytest.mark.parametrize(("fmt", "tolerance"), [("png", 0), ("jpeg", 3), ("webp", 4)])
def test_encode_decodes_back_to_the_same_pixels(fmt, tolerance):
    rgba = smooth()
    data = codecs.encode(rgba[:3], rgba[3], fmt)
    assert Image.open(io.BytesIO(data)).format == {"png": "PNG", "jpeg": "JPEG"}.get(fmt, "WEBP")
    for decoded in (pil_decode(data), codecs.decode_pixels(data).transpose(2, 0, 1)):
        error = np.abs(decoded.astype(int) - rgba).mean()
        assert error <= tolerance, (fmt, error)


def test_png_keeps_the_mask_and_grey_stays_grey():
    rgba = smooth()
    rgba[3, :, :10] = 0
    bands, mask = codecs.decode(codecs.encode(rgba[:3], rgba[3], "png"))
    assert (bands == rgba[:3]).all() and (mask == rgba[3]).all()
    grey = codecs.encode(rgba[:1], None, "png")
    assert Image.open(io.BytesIO(grey)).mode == "L"


def test_rgba_bands_without_a_mask_carry_their_own():
    rgba = smooth()
    rgba[3, :5] = 0
    assert (pil_decode(codecs.encode(rgba, None, "png")) == rgba).all()
    assert codecs.encode(rgba, None, "auto").startswith(b"\x89PNG")


def test_auto_is_jpeg_when_opaque_and_png_with_transparency():
    rgba = smooth()
    assert codecs.choose_format("auto", rgba[3]) == "jpeg"
    assert codecs.choose_format("auto", None) == "jpeg"
    rgba[3, 0, 0] = 0
    assert codecs.choose_format("auto", rgba[3]) == "png"
    assert codecs.encode(rgba[:3], rgba[3], "auto").startswith(b"\x89PNG")
    assert codecs.choose_format("jpg", rgba[3]) == "jpeg"
    with pytest.raises(ValueError, match="tiff"):
        codecs.choose_format("tiff", None)


def test_jpeg_quality_is_honoured():
    rgba = smooth(256, 256)
    low = codecs.encode(rgba[:3], rgba[3], "jpeg", jpeg_quality=30)
    high = codecs.encode(rgba[:3], rgba[3], "jpeg", jpeg_quality=95)
    assert len(low) < len(high) / 2


def test_decoded_views_are_encoded_without_a_copy():
    pixels = codecs.decode_pixels(codecs.encode(*_split(smooth()), "png"))
    bands, mask = pixels[..., :3].transpose(2, 0, 1), pixels[..., 3]
    assert codecs.interleave(bands, mask).__array_interface__["data"][0] == _address(pixels)
    band_first = np.ascontiguousarray(bands)  # another layout: copied, same pixels
    assert (codecs.interleave(band_first, mask) == pixels).all()


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_size_is_checked_before_decoding(fmt, monkeypatch):
    rgba = smooth(300, 300)
    data = codecs.encode(rgba[:3], rgba[3], fmt)
    # Decoding itself must not be reached: make every decoder fail loudly.
    monkeypatch.setattr(codecs.simplejpeg, "decode_jpeg", _never)
    monkeypatch.setattr(codecs, "_gdal_pixels", _never)
    with pytest.raises(SourceImageTooLarge, match="300x300"):
        codecs.decode(data, max_pixels=256 * 256)
    with pytest.raises(SourceImageTooLarge, match="larger than the 256x256"):
        codecs.decode(data, expect=(256, 256))


def test_broken_jpeg_is_a_source_error_and_extra_bytes_are_tolerated():
    good = codecs.encode(*_split(smooth()), "jpeg")
    with pytest.raises(SourceBadResponse):
        codecs.decode(good[:2] + bytes(300) + good[-2:])  # a JPEG with no image in it
    # Garbage before the end marker only makes libjpeg warn: the image is still good.
    padded = good[:-2] + b"\x00" * 16 + good[-2:]
    assert (codecs.decode_pixels(padded) == codecs.decode_pixels(good)).all()


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("reduce", [2, 4])
def test_reduced_decode_is_the_averaged_image(fmt, reduce):
    rgba = smooth(256, 256)
    pixels = codecs.decode_pixels(codecs.encode(*_split(rgba), fmt), reduce=reduce)
    assert pixels.shape == (256 // reduce, 256 // reduce, 4)
    n = 256 // reduce
    mean = rgba.reshape(4, n, reduce, n, reduce).mean(axis=(2, 4))
    assert np.abs(pixels.transpose(2, 0, 1) - mean).mean() < 3


def test_reduce_factor_needs_jpeg_and_a_coarser_read():
    jpeg = FetchedImage(b"\xff\xd8...", "image/jpeg")
    png = FetchedImage(b"\x89PNG...", "image/png")
    assert reduce_factor(1.9, (256, 256), [jpeg, None]) == 1
    assert reduce_factor(2.0, (256, 256), [jpeg, None]) == 2
    assert reduce_factor(5.0, (256, 256), [jpeg]) == 4
    assert reduce_factor(100.0, (256, 256), [jpeg]) == 8
    assert reduce_factor(100.0, (256, 256), [jpeg, png]) == 1
    assert reduce_factor(4.0, (250, 250), [jpeg]) == 2  # 4 does not divide 250


class JpegTiles(MemoryTiles):
    async def fetch_tile(self, tile):
        self.fetched.append(tile)
        data = self.renderer.tile(self.tms, tile.x, tile.y, tile.z, 256, "jpeg")
        return None if data is None else FetchedImage(data, "image/jpeg")


async def test_decimated_jpeg_read_lands_on_the_ground_truth(renderer, ground_truth, monkeypatch):
    decoded = []
    real = codecs.decode_pixels

    def spy(data, **kwargs):
        decoded.append(kwargs["reduce"])
        return real(data, **kwargs)

    monkeypatch.setattr("streaming.mosaic.decode_pixels", spy)
    source = JpegTiles(renderer, web_mercator(256))
    output = preview_grid(CENTER_LAT, CENTER_LON, resolution=40.0, size=128)
    result = await SourceReader(source).read(output, zoom=14)  # tiles 4x finer than needed
    assert decoded and set(decoded) == {4}
    assert_pixels_match(result.rgba, expected(ground_truth, output), tolerance=6)


def test_same_crs_resize_matches_gdal_warper():
    crs = CRS.from_epsg(3857)
    rgba = smooth(300, 300)
    rgba[3, :, :40] = 0  # transparent edge: colour must be weighed by alpha
    pixels = np.ascontiguousarray(rgba.transpose(1, 2, 0))
    src = Grid(crs, from_origin(1000.0, 5000.0, 10.0, 10.0), 300, 300)
    dst = Grid(crs, from_origin(1123.0, 4877.0, 13.7, 13.7), 180, 180)
    fast = resize(pixels, src, dst, Resampling.bilinear)
    assert fast is not None
    other = Grid(CRS.from_epsg(3395), dst.transform, 180, 180)
    assert resize(pixels, src, other, Resampling.bilinear) is None
    beyond = Grid(crs, from_origin(900.0, 5000.0, 10.0, 10.0), 100, 100)
    assert resize(pixels, src, beyond, Resampling.bilinear) is None
    slow = np.zeros((4, 180, 180), dtype=np.uint8)
    from rasterio.warp import reproject

    reproject(
        source=rgba, destination=slow, src_transform=src.transform, src_crs=crs,
        dst_transform=dst.transform, dst_crs=crs, resampling=Resampling.bilinear,
        src_alpha=4, dst_alpha=4,
    )  # fmt: skip
    fast_bands = fast.transpose(2, 0, 1).astype(int)
    opaque = (slow[3] == 255) & (fast_bands[3] == 255)
    assert opaque.mean() > 0.8
    assert np.abs(fast_bands[:3] - slow[:3])[:, opaque].mean() < 1.5
    assert np.abs(fast_bands[3] - slow[3]).mean() < 3
    assert (warp(pixels, src, dst, Resampling.bilinear) == fast).all()


def _split(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rgba[:3], rgba[3]


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _never(*args, **kwargs):
    raise AssertionError("decoded before the size check")
