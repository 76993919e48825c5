"""Decoded tiles kept between reads, and tiles decoded while the rest of a read arrives."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streaming.decoded import DecodedTiles
from streaming.errors import SourceBadResponse
from streaming.reader import SourceReader
from streaming.sources import FetchedImage
from streaming.types import TileIndex
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected, preview_grid
from tests.streaming.test_reader import MemoryTiles, web_mercator


class MemoTiles(MemoryTiles):
    """Ground-truth tiles (JPEG or PNG) offering a memory of decoded tiles, as the proxy does."""

    def __init__(self, renderer, memo: DecodedTiles, fmt: str = "png", delay: float = 0.0):
        super().__init__(renderer, web_mercator(256))
        self.decoded_tiles = memo.scoped("server-a")
        self.fmt, self.delay = fmt, delay

    async def fetch_tile(self, tile: TileIndex) -> FetchedImage | None:
        self.fetched.append(tile)
        # Staggered answers: early tiles are decoded while later ones are awaited.
        await asyncio.sleep(self.delay * (len(self.fetched) % 4))
        data = self.renderer.tile(self.tms, tile.x, tile.y, tile.z, 256, self.fmt)
        return None if data is None else FetchedImage(data, f"image/{self.fmt}")


def grid():
    return preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=512)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
async def test_a_read_keeps_its_decoded_tiles_and_the_next_read_pastes_them(
    renderer, ground_truth, executor, fmt
):
    memo = DecodedTiles()
    source = MemoTiles(renderer, memo, fmt, delay=0.01)
    first = await SourceReader(source, executor).read(grid())
    tiles = len(set(source.fetched))
    assert len(memo) == tiles  # decoded ahead or by the mosaic: each kept once
    tolerance = 8.0 if fmt == "png" else 12.0
    assert_pixels_match(first.rgba, expected(ground_truth, grid()), tolerance)
    # The memo's pixels are what the next read pastes: make one tile's pixels red.
    data = next(iter(memo._lru))[1]
    pixels, _ = memo.get("server-a", data, 1)
    red = np.zeros_like(pixels)  # (4, h, w), the layout kept
    red[0], red[3] = 255, 255
    memo.put("server-a", data, 1, red, False)
    again = await SourceReader(source, executor).read(grid())
    assert len(memo) == tiles
    red_now = (again.rgba == np.array([255, 0, 0, 255])[:, None, None]).all(axis=0)
    assert red_now.sum() > 1000  # the part of that tile inside the output, resampled
    assert not (first.rgba == np.array([255, 0, 0, 255])[:, None, None]).all(axis=0).any()


async def test_without_a_memo_in_the_source_nothing_is_kept(renderer, ground_truth, executor):
    source = MemoryTiles(renderer, web_mercator(256))
    result = await SourceReader(source, executor).read(grid())
    assert_pixels_match(result.rgba, expected(ground_truth, grid()))


async def test_kept_pixels_are_read_only_and_the_bound_evicts_the_oldest(renderer, executor):
    tile_bytes = 256 * 256 * 4
    memo = DecodedTiles(max_bytes=3 * tile_bytes + 3 * 20_000)
    source = MemoTiles(renderer, memo)
    await SourceReader(source, executor).read(grid())
    assert 0 < len(memo) <= 3 and memo.bytes <= 3 * tile_bytes + 3 * 20_000
    key = next(iter(memo._lru))
    pixels, _ = memo.get(*key)
    with pytest.raises(ValueError):
        pixels[0, 0, 0] = 1
    assert DecodedTiles(0).get(*key) is None  # 0 bytes: no memory at all


async def test_drop_forgets_one_scope_only(renderer, executor):
    memo = DecodedTiles()
    await SourceReader(MemoTiles(renderer, memo), executor).read(grid())
    kept = len(memo)
    data = next(iter(memo._lru))[1]
    pixels, blank = memo.get("server-a", data, 1)
    memo.put("server-b", data, 1, pixels, blank)
    assert memo.drop("server-a") == kept
    assert len(memo) == 1 and memo.get("server-b", data, 1) is not None


async def test_a_kept_tile_of_the_wrong_size_is_still_refused(renderer, executor):
    """The size check holds for pasted tiles too (a tile source with a wrong tile size)."""
    memo = DecodedTiles()
    source = MemoTiles(renderer, memo)
    await SourceReader(source, executor).read(grid())
    for scope, data, reduce in list(memo._lru):
        memo.put(scope, data, reduce, np.zeros((128, 128, 4), np.uint8).transpose(2, 0, 1), False)
    with pytest.raises(SourceBadResponse, match="expected 256x256"):
        await SourceReader(source, executor).read(grid())


async def test_a_broken_tile_fails_the_read_after_the_early_decodes(renderer, executor):
    memo = DecodedTiles()
    source = MemoTiles(renderer, memo, delay=0.01)
    real = source.fetch_tile

    async def one_broken(tile: TileIndex) -> FetchedImage | None:
        broken = len(source.fetched) == 4  # the fifth tile asked
        image = await real(tile)
        if broken:
            return FetchedImage(b"\x89PNG\r\n\x1a\n not a png", "image/png")
        return image

    source.fetch_tile = one_broken  # type: ignore[method-assign]
    with pytest.raises(SourceBadResponse):
        await SourceReader(source, executor).read(grid())
