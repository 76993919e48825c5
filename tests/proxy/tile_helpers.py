"""Helpers of the tile-route tests: a tile's grid from its definition, decoding, servers."""

from __future__ import annotations

import math

import morecantile
import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from streaming.mosaic import Grid
from tests.groundtruth import CENTER_LAT, CENTER_LON, MERCATOR

WMQ = morecantile.tms.get("WebMercatorQuad")


def centre_tile(z: int) -> morecantile.Tile:
    """The WebMercatorQuad tile holding the ground truth's centre."""
    return WMQ.tile(CENTER_LON, CENTER_LAT, z)


def tile_grid(z: int, x: int, y: int, size: int = 256) -> Grid:
    """The grid of a WebMercatorQuad tile, from the definition of the set."""
    half = math.pi * 6378137.0
    span = 2 * half / 2**z
    res = span / size
    return Grid(MERCATOR, from_origin(-half + x * span, half - y * span, res, res), size, size)


def decode(body: bytes) -> np.ndarray:
    """An image's bands as (bands, h, w); RGB gets an opaque alpha."""
    with MemoryFile(body) as mem, mem.open() as src:
        data = src.read()
    if data.shape[0] == 3:
        data = np.concatenate([data, np.full_like(data[:1], 255)])
    return data


async def add_server(api, config: dict) -> str:
    resp = await api.post("/servers", json={"name": "tiles", **config})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]
