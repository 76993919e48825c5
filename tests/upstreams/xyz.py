"""A fake XYZ tile server on loopback, cutting tiles out of the ground truth."""

from __future__ import annotations

import asyncio
import hashlib

import morecantile
import numpy as np
from aiohttp import web

from streaming.encode import encode_png
from streaming.types import TileIndex
from tests.upstreams.render import MEDIA, GroundTruthRenderer

HITS = web.AppKey("hits", list)
CONDITIONALS = web.AppKey("conditionals", list)  # If-None-Match of each /{s}/tiles request
PATHS = web.AppKey("paths", list)  # every raw path and query received, as sent
KEY = "sesame-0123"


def tile_from_quadkey(key: str) -> TileIndex:
    """Decode a Bing quadkey by hand: each digit is (x bit) + 2 * (y bit), coarsest first."""
    x = y = 0
    for digit in key:
        x, y = x * 2 + (int(digit) & 1), y * 2 + (int(digit) >> 1)
    return TileIndex(x, y, len(key))


def beyond_max_zoom(kind: str, blank: bytes) -> web.Response:
    """What a server answers for a tile past its deepest zoom."""
    if kind == "404":
        raise web.HTTPNotFound(text="no tile")
    if kind == "400":  # as ArcGIS and some tile servers answer past their last level
        raise web.HTTPBadRequest(text="Invalid level")
    return web.Response(body=blank if kind == "blank" else b"", content_type="image/png")


def _add_pasted_routes(app: web.Application, respond, xyz) -> None:  # type: ignore[no-untyped-def]
    """Routes for the pasted template dialects: keys, {r}, shifted levels, a space."""

    async def keyed(request: web.Request) -> web.Response:
        if request.query.get("apikey") != KEY:
            raise web.HTTPUnauthorized(text="bad key")
        return respond(xyz(request))

    async def retina(request: web.Request) -> web.Response:
        m = request.match_info
        y = m["y"].removesuffix("@2x")
        app[HITS].append(("r", m["y"].endswith("@2x")))
        return respond(TileIndex(int(m["x"]), int(y), int(m["z"])))

    async def shifted(request: web.Request) -> web.Response:
        m = request.match_info
        return respond(TileIndex(int(m["x"]), int(m["y"]), int(m["level"]) + 1))

    app.router.add_get("/key/{z}/{x}/{y}.png", keyed)
    app.router.add_get("/r/{z}/{x}/{y}.png", retina)
    app.router.add_get("/shift/{level}/{x}/{y}.png", shifted)


async def slow(request: web.Request) -> web.Response:
    """Never answer: the client times out."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def with_etag(request: web.Request, resp: web.Response) -> web.Response:
    """``resp`` with an ETag; a 304 when the request's If-None-Match names it."""
    assert isinstance(resp.body, bytes)
    tag = '"' + hashlib.sha1(resp.body).hexdigest() + '"'
    asked = request.headers.get("If-None-Match")
    request.app[CONDITIONALS].append(asked)
    if asked == tag:
        return web.Response(status=304, headers={"ETag": tag})
    resp.headers["ETag"] = tag
    return resp


def _plain(respond, xyz):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        if request.match_info["dir"] != "with space":
            raise web.HTTPNotFound(text="no such folder")
        return respond(xyz(request))

    return handler


def xyz_app(
    renderer: GroundTruthRenderer,
    *,
    max_zoom: int = 16,
    tile_size: int = 256,
    past_max_zoom: str = "404",
    etags: bool = False,
) -> web.Application:
    """Routes:

    - ``/{s}/tiles/{z}/{x}/{y}.{ext}``: XYZ rows (``s`` is any subdomain label)
    - ``/tms/{z}/{x}/{y}.png``: TMS rows (``{-y}``)
    - ``/q/{quadkey}.png``: Bing quadkeys
    - ``/html/{z}/{x}/{y}``: an HTML page where a tile should be
    - ``/auth/{z}/{x}/{y}.png``: needs header ``X-Api-Key: sesame`` (401 otherwise)
    - ``/key/{z}/{x}/{y}.png``: needs query ``apikey=sesame-0123`` (401 otherwise)
    - ``/r/{z}/{x}/{y}@2x.png`` or ``{y}.png``: Leaflet's ``{r}`` retina suffix
    - ``/shift/{level}/{x}/{y}.png``: MapProxy-style TMS levels, level L is zoom L+1
    - ``/with space/{z}/{x}/{y}.png``: a path with a space (sent as ``%20``)

    Past ``max_zoom`` every tile is, by ``past_max_zoom``: a ``"404"``, an ``"empty"`` 200
    answer, a ``"400"`` ("Invalid level"), or a ``"blank"`` uniform grey PNG ("no imagery
    here" tiles of real servers).
    ``app[HITS]`` counts requests per path kind. With ``etags`` the ``/{s}/tiles`` answers
    carry an ``ETag`` and a matching ``If-None-Match`` gets a 304 (``app[CONDITIONALS]``).
    ``/slow/{z}/{x}/{y}.png`` never answers (until the client gives up).
    """
    blank = encode_png(np.full((4, tile_size, tile_size), 200, dtype=np.uint8))
    # morecantile's own set, not the product's: tile (x, y, z) covers the same ground at
    # any tile size, only the pixel count differs (rendered at ``tile_size``).
    tms = morecantile.tms.get("WebMercatorQuad")

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        request.app[PATHS].append(request.raw_path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app[HITS] = []
    app[PATHS] = []
    app[CONDITIONALS] = []

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
        resp = respond(xyz(request), request.match_info["ext"])
        return with_etag(request, resp) if etags else resp

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

    _add_pasted_routes(app, respond, xyz)
    app.router.add_get("/{s}/tiles/{z}/{x}/{y}.{ext}", tiles)
    app.router.add_get("/slow/{z}/{x}/{y}.png", slow)
    app.router.add_get("/tms/{z}/{x}/{y}.png", tms_tiles)
    app.router.add_get("/q/{key}.png", quad)
    app.router.add_get("/html/{z}/{x}/{y}", html)
    app.router.add_get("/auth/{z}/{x}/{y}.png", auth)
    app.router.add_get("/{dir}/{z}/{x}/{y}.png", _plain(respond, xyz))
    return app


# Digits 0, 2, 3, 1: x bits 0 0 1 1 = 3, y bits 0 1 1 0 = 6 (checked by hand, not by the product).
assert tile_from_quadkey("0231") == TileIndex(3, 6, 4)
