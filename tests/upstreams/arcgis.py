"""A fake ArcGIS Server on loopback: token service, tile caches, export and exportImage.

Services live under ``/arcgis/rest/services/{name}/{MapServer|ImageServer}``; the same
services under ``Secure/{name}`` need a token (header ``X-Esri-Authorization: Bearer``
with the Referer the token was made for). Like ArcGIS, token errors are JSON with HTTP
200 (``499`` no token, ``498`` invalid), unless ``state.auth_as_status`` is set.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import morecantile
import orjson
from aiohttp import web
from rasterio.crs import CRS

from tests.upstreams.render import GroundTruthRenderer

USER, PASSWORD = "alice", "s3cret-Pa55"
WEB_MERCATOR_SR = {"wkid": 102100, "latestWkid": 3857}
SERVICE_PATH = re.compile(r"(?P<key>.+?/(?:Map|Image)Server)(?:/(?P<op>.*))?")
SWISS_SR = {"wkid": 2056, "latestWkid": 2056}
FULL_EXTENT = {
    "xmin": 727000.0,
    "ymin": 5858000.0,
    "xmax": 749000.0,
    "ymax": 5877000.0,
    "spatialReference": WEB_MERCATOR_SR,
}


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    url: str  # path and query
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class ArcGISState:
    """What the fake knows and does; tests read and tweak it."""

    token_endpoint: str = "server"  # server: /arcgis/tokens/; portal: full URL; none: no info
    tokens: dict[str, str] = field(default_factory=dict)  # token -> referer it was made for
    revoked: set[str] = field(default_factory=set)
    reject_next_tokens: int = 0  # that many next tokens are refused by the services (498)
    auth_as_status: bool = False  # token errors as HTTP 498/499 instead of JSON with 200
    requests: list[Seen] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def generated(self) -> int:
        """How many generateToken requests were made."""
        return sum(1 for seen in self.requests if "generateToken" in seen.url)


STATE = web.AppKey("arcgis_state", ArcGISState)
RENDERER = web.AppKey("arcgis_renderer", GroundTruthRenderer)
PORTAL_TOKEN_PATH = "/portal/sharing/rest/generateToken"


def mercator_resolution(z: int, size: int) -> float:
    """Web Mercator metres per pixel of level ``z``: the equator (2 pi R) over its pixels."""
    return 2 * math.pi * 6378137.0 / (size * 2**z)


def mercator_tile_info(levels: range | list[int], size: int = 256, fmt: str = "PNG32") -> dict:
    lods = [
        {
            "level": z,
            "resolution": mercator_resolution(z, size),
            "scale": mercator_resolution(z, size) * 96 / 0.0254,
        }
        for z in levels
    ]
    return {
        "rows": size,
        "cols": size,
        "dpi": 96,
        "format": fmt,
        "compressionQuality": 0,
        "origin": {"x": -20037508.342787, "y": 20037508.342787},
        "spatialReference": WEB_MERCATOR_SR,
        "lods": lods,
    }


SWISS_TILE_INFO = {
    "rows": 256,
    "cols": 256,
    "dpi": 96,
    "format": "JPEG",
    "origin": {"x": 2420000.0, "y": 1350000.0},
    "spatialReference": SWISS_SR,
    "lods": [
        {"level": i, "resolution": r, "scale": r * 96 / 0.0254}
        for i, r in enumerate([4000.0, 2000.0, 1000.0, 500.0, 250.0, 100.0, 50.0, 20.0, 10.0])
    ],
}


def _map_info(tile_info: dict | None, capabilities: str, **extra: Any) -> dict:
    info: dict[str, Any] = {
        "currentVersion": 11.1,
        "mapName": "Layers",
        "capabilities": capabilities,
        "spatialReference": WEB_MERCATOR_SR,
        "fullExtent": FULL_EXTENT,
        "units": "esriMeters",
        "maxImageWidth": 4096,
        "maxImageHeight": 4096,
        "singleFusedMapCache": tile_info is not None,
        **extra,
    }
    if tile_info is not None:
        info["tileInfo"] = tile_info
    return info


def _image_info(tile_info: dict | None, capabilities: str, **extra: Any) -> dict:
    info: dict[str, Any] = {
        "currentVersion": 11.1,
        "serviceDataType": "esriImageServiceDataTypeRGB",
        "capabilities": capabilities,
        "extent": FULL_EXTENT,
        "spatialReference": WEB_MERCATOR_SR,
        "bandCount": 3,
        "pixelType": "U8",
        "maxImageWidth": 4096,
        "maxImageHeight": 4096,
        **extra,
    }
    if tile_info is not None:
        info.update(singleFusedMapCache=True, cacheType="Map", tileInfo=tile_info)
    return info


def _without(info: dict, key: str) -> dict:
    return {k: v for k, v in info.items() if k != key}


SERVICES: dict[str, dict] = {
    "Ortho/MapServer": _map_info(mercator_tile_info(range(0, 17)), "Map,Query,Data"),
    "Ortho512/MapServer": _map_info(mercator_tile_info(range(0, 16), 512, "JPEG"), "TilesOnly"),
    "Sparse/MapServer": _map_info(mercator_tile_info([10, 12, 13, 15, 16]), "TilesOnly"),
    "Dynamic/MapServer": _map_info(None, "Map,Query,Data"),
    "SwissMap/MapServer": _map_info(SWISS_TILE_INFO, "Map,Query", spatialReference=SWISS_SR),
    "Ortho/ImageServer": _image_info(None, "Image,Metadata,Catalog"),
    "Small/ImageServer": _image_info(None, "Image,Metadata", maxImageWidth=100, maxImageHeight=100),
    "Swiss/ImageServer": _image_info(
        SWISS_TILE_INFO, "Catalog,Metadata", spatialReference=SWISS_SR
    ),
    "Elevation/ImageServer": {
        **_image_info(mercator_tile_info(range(0, 14), fmt="LERC"), "Image,Metadata"),
        "cacheType": "Elevation",
        "pixelType": "F32",
    },
    # As Esri writes hosted tile layers: tileInfo, no singleFusedMapCache nor cacheType.
    "EsriTiles/MapServer": _without(
        _map_info(mercator_tile_info(range(0, 17)), "Map,Query"), "singleFusedMapCache"
    ),
    "EsriSwiss/MapServer": _without(
        _map_info(SWISS_TILE_INFO, "Map,TilesOnly", spatialReference=SWISS_SR),
        "singleFusedMapCache",
    ),
    "EsriElevation/ImageServer": {
        **_image_info(None, "Image,Metadata"),
        "tileInfo": mercator_tile_info(range(0, 14), fmt="lerc2d"),
    },
    # Declares PNG tiles, serves LERC blobs.
    "Disguised/ImageServer": _image_info(mercator_tile_info(range(0, 17), fmt="MIXED"), "Catalog"),
}


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error(code: int, message: str, status: int = 200) -> web.Response:
    return _json({"error": {"code": code, "message": message, "details": []}}, status)


def arcgis_app(renderer: GroundTruthRenderer) -> web.Application:
    """The fake server; ``app[STATE]`` records requests and steers the token service."""
    app = web.Application(middlewares=[_record])
    app[STATE] = ArcGISState()
    app[RENDERER] = renderer
    app.router.add_get("/arcgis/rest/info", _rest_info)
    app.router.add_post("/arcgis/tokens/generateToken", _generate_token)
    app.router.add_post("/portal/sharing/rest/generateToken", _generate_token)
    app.router.add_get("/arcgis/rest/services/{tail:.+}", _services)
    return app


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    form = {k: str(v) for k, v in (await request.post()).items()}
    seen = Seen(request.method, request.path_qs, dict(request.headers), form)
    request.app[STATE].requests.append(seen)
    return await handler(request)


async def _rest_info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.token_endpoint == "none":
        raise web.HTTPNotFound()
    path = "/arcgis/tokens/" if state.token_endpoint == "server" else PORTAL_TOKEN_PATH
    url = f"{request.scheme}://{request.host}{path}"
    auth = {"isTokenBasedSecurity": True, "tokenServicesUrl": url}
    return _json({"currentVersion": 11.1, "authInfo": auth})


async def _generate_token(request: web.Request) -> web.Response:
    state, form = request.app[STATE], await request.post()
    if (form.get("username"), form.get("password")) != (USER, PASSWORD):
        details = ["Invalid username or password."]
        error = {"code": 400, "message": "Unable to generate token.", "details": details}
        return _json({"error": error})
    token = f"tok-{next(state.counter)}-{time.monotonic_ns()}"
    state.tokens[token] = str(form.get("referer", ""))
    if state.reject_next_tokens > 0:
        state.reject_next_tokens -= 1
        state.revoked.add(token)
    expires = int((time.time() + 60 * int(str(form.get("expiration", "60")))) * 1000)
    return _json({"token": token, "expires": expires, "ssl": False})


async def _services(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    match = SERVICE_PATH.fullmatch(tail.removeprefix("Secure/"))
    key, operation = (match["key"], match["op"] or "") if match else ("", "")
    if key not in SERVICES:
        return _error(404, "Service not found")
    if tail.startswith("Secure/") and (denied := _check_token(request)) is not None:
        return denied
    info, renderer = SERVICES[key], request.app[RENDERER]
    if not operation:
        return _json(info)
    if operation.startswith("tile/"):
        return _tile(renderer, key, info, operation)
    if operation in ("export", "exportImage"):
        return _export(renderer, info, request.query)
    return _error(400, "Invalid URL")


def _check_token(request: web.Request) -> web.Response | None:
    state = request.app[STATE]
    header = request.headers.get("X-Esri-Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    if not token:
        return _error(499, "Token Required", 499 if state.auth_as_status else 200)
    referer_ok = state.tokens.get(token) == request.headers.get("Referer")
    if token in state.revoked or token not in state.tokens or not referer_ok:
        return _error(498, "Invalid Token", 498 if state.auth_as_status else 200)
    return None


def _tile(renderer: GroundTruthRenderer, key: str, info: dict, operation: str) -> web.Response:
    level, row, col = (int(v) for v in operation.split("/")[1:4])
    tile_info = info["tileInfo"]
    if key == "Disguised/ImageServer":
        return web.Response(body=b"Lerc2 \x03\x00\x00\x00" + bytes(64), content_type="image/png")
    if level not in {lod["level"] for lod in tile_info["lods"]}:
        return _error(404, "Tile not found", 404)
    size = tile_info["rows"]
    fmt = "jpeg" if tile_info["format"] == "JPEG" else "png"
    # morecantile's set, not the product's: a tile's ground is the same at any pixel size.
    data = renderer.tile(morecantile.tms.get("WebMercatorQuad"), col, row, level, size, fmt)
    if data is None:
        return _error(404, "Tile not found", 404)
    return web.Response(body=data, content_type=f"image/{fmt}")


def _export(renderer: GroundTruthRenderer, info: dict, query: Any) -> web.Response:
    if query.get("f") != "image" or query.get("bboxSR") != query.get("imageSR"):
        return _error(400, "Unable to complete operation.")
    width, height = (int(v) for v in query["size"].split(","))
    if width > info["maxImageWidth"] or height > info["maxImageHeight"]:
        return _error(400, "Requested image exceeds the size limit.")
    srid = int(query["bboxSR"])
    crs = CRS.from_epsg(3857 if srid == 102100 else srid)
    bbox = tuple(float(v) for v in query["bbox"].split(","))
    fmt = "jpeg" if query.get("format", "png").startswith("jpg") else "png"
    data = renderer.bbox(bbox, crs, width, height, fmt)  # type: ignore[arg-type]
    return web.Response(body=data, content_type=f"image/{fmt}")
