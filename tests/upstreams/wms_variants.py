"""Variants of the fake WMS (:mod:`tests.upstreams.wms`) that real servers publish.

``many_crs_app``: every layer lists thousands of CRSs, sorted by code, as GeoServer
does by default; EPSG:3857 and EPSG:4326 are somewhere among them. It renders in a
thread, so a test can time the service's event loop, which this fake shares.
"""

from __future__ import annotations

import asyncio
import struct
import zlib

import numpy as np
from aiohttp import web
from pyproj.database import get_codes
from rasterio.crs import CRS
from rio_tiler.io import Reader

from tests.upstreams.render import GroundTruthRenderer
from tests.upstreams.wms import REQUESTS, capabilities, service_exception


def many_codes(count: int) -> list[str]:
    """``count`` EPSG codes PROJ knows, sorted by number (3857 and 4326 included)."""
    kinds = ("PROJECTED_CRS", "GEOGRAPHIC_2D_CRS", "GEOGRAPHIC_3D_CRS", "COMPOUND_CRS")
    codes = {int(c) for kind in kinds for c in get_codes("EPSG", kind)}
    chosen = sorted(codes - {3857, 4326})[: count - 2]
    return [f"EPSG:{c}" for c in sorted([*chosen, 3857, 4326])]


def png_bytes(rgba: np.ndarray) -> bytes:
    """A (4, h, w) uint8 array as an RGBA PNG, compressed by zlib (GIL released)."""
    _, height, width = rgba.shape
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), rgba.transpose(1, 2, 0).reshape(height, -1)], axis=1
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def many_crs_app(renderer: GroundTruthRenderer, count: int = 6000) -> web.Application:
    """A WMS 1.3.0 at ``/wms`` whose root layer lists ``count`` CRSs."""
    app = web.Application()
    app[REQUESTS] = []
    listed = "".join(f"<CRS>{code}</CRS>" for code in many_codes(count))
    size = (4096, 4096)

    def render(params: dict[str, str]) -> web.Response:
        # Pixels warped by GDAL, but encoded by zlib, which lets go of the GIL while it
        # works: GDAL's PNG writer holds it and would stall the loop under test too.
        code, bbox = params["CRS"], tuple(float(v) for v in params["BBOX"].split(","))
        crs = CRS.from_user_input(code)
        with Reader(str(renderer.path)) as src:
            img = src.part(
                bbox,
                dst_crs=crs,
                bounds_crs=crs,
                width=int(params["WIDTH"]),
                height=int(params["HEIGHT"]),
                max_size=None,
            )
        rgba = np.concatenate([img.data.astype(np.uint8), img.mask[None].astype(np.uint8)])
        return web.Response(body=png_bytes(rgba), content_type="image/png")

    async def handle(request: web.Request) -> web.Response:
        params = {k.upper(): v for k, v in request.query.items()}
        app[REQUESTS].append({"PATH": request.path, **params})
        kind = params.get("REQUEST", "").lower()
        if kind == "getcapabilities":
            online = str(request.url.origin()) + "/wms?"
            text = capabilities("1.3.0", online, size)
            # The root layer's CRSs become the long list (the known ones stay in it).
            text = text.replace(
                "<CRS>EPSG:4326</CRS><CRS>EPSG:3857</CRS><CRS>CRS:84</CRS>", listed, 1
            )
            return web.Response(text=text, content_type="text/xml")
        if kind == "getmap":  # rendered off the loop: the service under test shares it
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, render, params)
        return service_exception(f"unknown request {kind!r}", "1.3.0")

    app.router.add_get("/wms", handle)
    return app
