"""Decoding upstream images: band layouts, blank detection, and refusals before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.io import MemoryFile

from streaming.decode import decode_rgba, is_blank
from streaming.encode import encode_jpeg, encode_png
from streaming.errors import SourceBadResponse


def png(bands: np.ndarray, **profile) -> bytes:
    count, height, width = bands.shape
    with MemoryFile() as mem:
        with mem.open(
            driver="PNG", width=width, height=height, count=count, dtype="uint8", **profile
        ) as dst:
            dst.write(bands)
        return bytes(mem.read())


def test_rgba_round_trip():
    rgba = np.random.default_rng(1).integers(0, 255, (4, 32, 48), dtype=np.uint8)
    rgba[3] = np.where(rgba[3] > 128, 255, 0)
    assert (decode_rgba(encode_png(rgba)) == rgba).all()


def test_grey_and_rgb_get_an_opaque_alpha():
    grey = np.full((1, 8, 8), 77, dtype=np.uint8)
    out = decode_rgba(png(grey))
    assert (out[:3] == 77).all() and (out[3] == 255).all()
    rgb = np.stack([np.full((8, 8), v, dtype=np.uint8) for v in (10, 20, 30)])
    out = decode_rgba(encode_jpeg(np.concatenate([rgb, rgb[:1]])))
    assert out.shape == (4, 8, 8) and (out[3] == 255).all()
    assert abs(int(out[2].mean()) - 30) <= 2


def test_paletted_png_is_expanded():
    index = np.zeros((1, 4, 4), dtype=np.uint8)
    index[0, :2] = 1
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=4, height=4, count=1, dtype="uint8") as dst:
            dst.write(index)
            dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 0, 255, 255)})
        data = bytes(mem.read())
    out = decode_rgba(data)
    assert tuple(out[:, 0, 0]) == (0, 0, 255, 255)
    assert tuple(out[:, 3, 3]) == (255, 0, 0, 255)


def test_image_past_the_pixel_limit_is_refused():
    data = encode_png(np.zeros((4, 300, 300), dtype=np.uint8))
    with pytest.raises(SourceBadResponse, match="300x300"):
        decode_rgba(data, max_pixels=256 * 256)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n garbage", b"<html>oops</html>"])
def test_undecodable_bytes_are_a_source_error(data):
    with pytest.raises(SourceBadResponse):
        decode_rgba(data)


def test_blank_detection():
    assert is_blank(np.zeros((4, 4, 4), dtype=np.uint8))
    assert is_blank(np.full((4, 4, 4), 255, dtype=np.uint8))
    varied = np.full((4, 4, 4), 255, dtype=np.uint8)
    varied[0, 1, 1] = 3
    assert not is_blank(varied)


@pytest.mark.parametrize("seed", range(40))
def test_blank_detection_of_interleaved_pixels_matches_the_plain_rule(seed):
    # The interleaved path answers most tiles from three pixels; it must agree with the
    # rule (all transparent, or one colour) whatever the corners and the middle hold.
    rng = np.random.default_rng(seed)
    pixels = np.empty((3, 4, 4), dtype=np.uint8)
    pixels[:] = rng.integers(0, 256, 4, dtype=np.uint8)  # uniform...
    kind = seed % 4
    if kind == 1:  # ...but one pixel, not a probed one
        pixels[1, 0, rng.integers(0, 4)] ^= 1
    elif kind == 2:  # all transparent, colours varied
        pixels[..., :3] = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        pixels[..., 3] = 0
    elif kind == 3:  # noise
        pixels[:] = rng.integers(0, 256, pixels.shape, dtype=np.uint8)
    rgba = pixels.transpose(2, 0, 1)  # a view of interleaved RGBA
    plain = not pixels[..., 3].any() or bool((pixels == pixels[0, 0]).all())
    assert is_blank(rgba) == plain
    assert is_blank(np.ascontiguousarray(rgba)) == plain  # the band-first path agrees
