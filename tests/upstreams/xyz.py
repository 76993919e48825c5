"""A fake XYZ tile server on loopback, cutting tiles out of the ground truth."""

from __future__ import annotations

import numpy as np
from aiohttp import web

from proxy.upstream.xyz import quadkey
from streaming.encode import encode_png
from streaming.grid import web_mercator_tms
from streaming.types import TileIndex
from tests.upstreams.render import MEDIA, GroundTruthRenderer

HITS = web.AppKey("hits", list)


def tile_from_quadkey(key: str) -> TileIndex:
    x = y = 0
    for digit in key:
        x, y = x * 2 + (int(digit) & 1), y * 2 + (int(digit) >> 1)
    return TileIndex(x, y, len(key))


def beyond_max_zoom(kind: str, blank: bytes) -> web.Response:
    """What a server answers for a tile past its deepest zoom."""
    if kind == "404":
        raise web.HTTPNotFound(text="no tile")
    return web.Response(body=blank if kind == "blank" else b"", content_type="image/png")


def xyz_app(
    renderer: GroundTruthRenderer,
    *,
    max_zoom: int = 16,
    tile_size: int = 256,
    past_max_zoom: str = "404",
) -> web.Application:
    """Routes:

    - ``/{s}/tiles/{z}/{x}/{y}.{ext}``: XYZ rows (``s`` is any subdomain label)
    - ``/tms/{z}/{x}/{y}.png``: TMS rows (``{-y}``)
    - ``/q/{quadkey}.png``: Bing quadkeys
    - ``/html/{z}/{x}/{y}``: an HTML page where a tile should be
    - ``/auth/{z}/{x}/{y}.png``: needs header ``X-Api-Key: sesame`` (401 otherwise)

    Past ``max_zoom`` every tile is, by ``past_max_zoom``: a ``"404"``, an ``"empty"`` 200
    answer, or a ``"blank"`` uniform grey PNG ("no imagery here" tiles of real servers).
    ``app[HITS]`` counts requests per path kind.
    """
    blank = encode_png(np.full((4, tile_size, tile_size), 200, dtype=np.uint8))
    tms = web_mercator_tms(tile_size)
    app = web.Application()
    app[HITS] = []

    def respond(tile: TileIndex, ext: str = "png") -> web.Response:
        if tile.z > max_zoom:
            return beyond_max_zoom(past_max_zoom, blank)
        data = renderer.tile(tms, tile.x, tile.y, tile.z, tile_size, ext)
        if data is None:
            raise web.HTTPNotFound(text="no tile")
        return web.Response(body=data, content_type=MEDIA[ext])

    def xyz(request: web.Request) -> TileIndex:
        m = request.match_info
        return TileIndex(int(m["x"]), int(m["y"]), int(m["z"]))

    async def tiles(request: web.Request) -> web.Response:
        app[HITS].append(("xyz", request.match_info["s"]))
        return respond(xyz(request), request.match_info["ext"])

    async def tms_tiles(request: web.Request) -> web.Response:
        t = xyz(request)
        return respond(TileIndex(t.x, (1 << t.z) - 1 - t.y, t.z))

    async def quad(request: web.Request) -> web.Response:
        return respond(tile_from_quadkey(request.match_info["key"]))

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")

    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != "sesame":
            raise web.HTTPUnauthorized(text="bad key")
        return respond(xyz(request))

    app.router.add_get("/{s}/tiles/{z}/{x}/{y}.{ext}", tiles)
    app.router.add_get("/tms/{z}/{x}/{y}.png", tms_tiles)
    app.router.add_get("/q/{key}.png", quad)
    app.router.add_get("/html/{z}/{x}/{y}", html)
    app.router.add_get("/auth/{z}/{x}/{y}.png", auth)
    return app


assert quadkey(tile_from_quadkey("0231")) == "0231"
