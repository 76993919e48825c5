"""Encodings of a read: georeferenced GeoTIFF with its mask, NPY layout, PNG alpha, JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from proxy.images.formats import NpyTarget, encode, georef_headers

UTM = CRS.from_epsg(32631)
T = Affine(2.5, 0.0, 500_000.0, 0.0, -2.5, 5_150_000.0)


@pytest.fixture
def rgba() -> np.ndarray:
    rng = np.random.default_rng(1)
    data = rng.integers(1, 255, (4, 300, 260), dtype=np.uint8)
    data[3] = 255
    data[3, :, :40] = 0  # masked: outside every AOI
    return data


def test_geotiff_is_georeferenced_rgb_with_the_mask(rgba):
    encoded = encode(rgba, UTM, T, "tif")
    assert encoded.media_type == "image/tiff"
    with MemoryFile(encoded.body) as mem, mem.open() as src:
        assert (src.count, src.width, src.height) == (3, 260, 300)
        assert src.crs == UTM and src.transform == T
        assert np.array_equal(src.read(), rgba[:3])
        assert np.array_equal(src.dataset_mask(), rgba[3])


def test_npy_is_bands_then_mask(rgba):
    encoded = encode(rgba, UTM, T, "npy")
    array = np.load(io.BytesIO(encoded.body), allow_pickle=False)
    assert array.dtype == np.uint8 and array.shape == (4, 300, 260)
    assert np.array_equal(array, rgba)


def test_png_alpha_is_the_mask_and_jpeg_is_rgb(rgba):
    with MemoryFile(encode(rgba, UTM, T, "png").body) as mem, mem.open() as src:
        assert src.count == 4 and np.array_equal(src.read(4), rgba[3])
    with MemoryFile(encode(rgba, UTM, T, "jpg").body) as mem, mem.open() as src:
        assert src.driver == "JPEG" and src.count == 3


def test_headers_carry_crs_and_transform():
    headers = georef_headers(UTM, T)
    assert headers["X-CRS"] == "EPSG:32631"
    assert [float(v) for v in headers["X-Transform"].split(",")] == list(T)[:6]
    wkt = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=7 +k=1 +x_0=0 +y_0=0 +ellps=GRS80")
    assert "\n" not in georef_headers(wkt, T)["X-CRS"]


def test_npy_is_what_numpy_save_writes_from_an_interleaved_read():
    # a read's pixels: a band-first view of an interleaved buffer, cut out of a canvas
    rng = np.random.default_rng(2)
    canvas = rng.integers(0, 256, (310, 270, 4), dtype=np.uint8)
    rgba = canvas[5:305, 3:263].transpose(2, 0, 1)
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(rgba), allow_pickle=False)
    body = encode(rgba, UTM, T, "npy").body
    assert bytes(body) == out.getvalue()


def test_npy_of_the_pixels_a_read_pasted_into_its_target_is_that_buffer():
    target = NpyTarget()
    pixels = target(5, 7)  # as the mosaic asks for it
    assert pixels.shape == (4, 5, 7) and not pixels.any()
    pixels[:] = np.arange(4 * 5 * 7, dtype=np.uint8).reshape(4, 5, 7)
    body = encode(pixels, CRS.from_epsg(3857), Affine.identity(), "npy", target).body
    assert isinstance(body, memoryview) and np.shares_memory(np.asarray(body), pixels)
    expected = io.BytesIO()
    np.save(expected, np.ascontiguousarray(pixels))
    assert bytes(body) == expected.getvalue()  # what numpy.save writes, byte for byte
    # pixels that are not the target's (a masked copy, a resampled read) are copied
    other = pixels.copy()
    copied = encode(other, CRS.from_epsg(3857), Affine.identity(), "npy", target).body
    assert not np.shares_memory(np.asarray(copied), pixels) and bytes(copied) == bytes(body)
