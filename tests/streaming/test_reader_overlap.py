"""A full-scale tile read decodes each tile on arrival, while later tiles are on their way."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from streaming import mosaic, reader
from streaming.reader import SourceReader
from tests.groundtruth import CENTER_LAT, CENTER_LON, assert_pixels_match, expected
from tests.streaming.test_reader import MemoryTiles, web_mercator


class LastTileWaits(MemoryTiles):
    """The last tile asked is answered only once every other tile has been decoded."""

    def __init__(self, *args, decoded: list[object], count: int) -> None:
        super().__init__(*args)
        self.decoded, self.count = decoded, count

    async def fetch_tile(self, tile):
        if len(self.fetched) == self.count - 1:  # the last one
            for _ in range(200):  # 2 s at most: a read that never decodes early fails
                if len(self.decoded) == self.count - 1:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail(
                    f"{len(self.decoded)} of {self.count - 1} tiles decoded before the last"
                )
        return await super().fetch_tile(tile)


async def test_tiles_are_decoded_while_the_last_one_is_fetched(renderer, ground_truth, monkeypatch):
    output = reader.preview_grid(CENTER_LAT, CENTER_LON, resolution=10.0, size=256)
    count = len(reader.plan_tiles(MemoryTiles(renderer, web_mercator(256)), output).tiles)
    decoded: list[object] = []
    paste = mosaic.paste_piece

    def spy(pixels, piece, max_pixels):
        found = paste(pixels, piece, max_pixels)
        decoded.append(piece.label)
        return found

    monkeypatch.setattr(reader, "paste_piece", spy)
    source = LastTileWaits(renderer, web_mercator(256), decoded=decoded, count=count)
    with ThreadPoolExecutor(2) as executor:
        result = await SourceReader(source, executor).read(output)
    assert count > 2 and len(decoded) == count
    assert result.requests == count and (result.missing, result.blank) == (0, 0)
    assert_pixels_match(result.rgba, expected(ground_truth, output))
