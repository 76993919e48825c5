"""The routes of imports and streaming images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp.typedefs import Handler

from proxy.api_models import (
    ImageList,
    ImageView,
    ImportAsk,
    ImportPlan,
    TileJSON,
)
from proxy.handlers import images
from proxy.jobs.api_models import ImportStarted
from proxy.routes.route import TOKEN_QUERY, UPSTREAM_ERRORS, Route, query_param

READ_MEDIA = ("image/tiff", "application/x-npy", "image/png", "image/jpeg")
READ_ERRORS = (400, 409, 410, 413, 502, 503, 504)
DETECTOR_QUERY = query_param(
    "detector_resolution",
    "the detector's resolution, m/px (or the X-Detector-Resolution header): a read finer "
    "than detector_resolution / guard_max_ratio is refused (409 resolution_too_high)",
    {"type": "number", "exclusiveMinimum": 0},
)
SIDE = {"type": "integer", "minimum": 1, "maximum": 32768}


def _image_read(path: str, handler: Handler, summary: str, *query: Mapping[str, Any]) -> Route:
    return Route(
        method="GET",
        path=path,
        handler=handler,
        summary=summary,
        tag="images",
        answer="image/tiff",
        also=READ_MEDIA[1:],
        errors=READ_ERRORS,
        query=(*query, DETECTOR_QUERY),
    )


IMAGE_ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path="/imports/plan",
        handler=images.plan_import,
        summary="What an import would make: grid, pixels, zoom, upstream requests, bytes, cells",
        tag="images",
        body=ImportAsk,
        answer=ImportPlan,
        errors=(400, 404, *UPSTREAM_ERRORS),
    ),
    Route(
        method="POST",
        path="/imports",
        handler=images.create_import,
        summary="Import AOIs of a server as a streaming image (download: and materialize it)",
        tag="images",
        body=ImportAsk,
        ok=201,
        answer=ImageView,
        other_ok=((202, ImportStarted),),
        errors=(400, 404, *UPSTREAM_ERRORS),
    ),
    Route(
        method="GET",
        path="/images",
        handler=images.list_images,
        summary="List the streaming images",
        tag="images",
        answer=ImageList,
    ),
    Route(
        method="GET",
        path="/images/{id}",
        handler=images.get_image,
        summary="Metadata of a streaming image",
        tag="images",
        answer=ImageView,
    ),
    Route(
        method="DELETE",
        path="/images/{id}",
        handler=images.delete_image,
        summary="Delete a streaming image",
        tag="images",
        ok=204,
    ),
    _image_read(
        "/images/{id}/window/{col_off},{row_off},{w},{h}.{fmt}",
        images.read_window,
        "A pixel window of an image (tif, npy, png, jpg)",
        query_param("out_width", "decimated output width, px", SIDE),
        query_param("out_height", "decimated output height, px", SIDE),
    ),
    _image_read(
        "/images/{id}/bbox/{minx},{miny},{maxx},{maxy}.{fmt}",
        images.read_bbox,
        "A bbox of an image, in any CRS (tif, npy, png, jpg)",
        query_param("crs", "CRS of the bbox (default EPSG:4326, lon/lat)", {"type": "string"}),
        query_param("width", "output width, px", SIDE),
        query_param("height", "output height, px", SIDE),
        query_param(
            "resolution",
            "output resolution, CRS units per px",
            {"type": "number", "exclusiveMinimum": 0},
        ),
    ),
    Route(
        method="GET",
        path="/images/{id}/tiles/{z}/{x}/{y}.{fmt}",
        handler=images.read_tile,
        summary="A WebMercatorQuad tile of an image (png, jpg, tif, npy)",
        tag="images",
        answer="image/png",
        also=("image/jpeg", "image/tiff", "application/x-npy"),
        errors=READ_ERRORS,
        query=(TOKEN_QUERY, DETECTOR_QUERY),
    ),
    Route(
        method="GET",
        path="/images/{id}/tilejson.json",
        handler=images.get_image_tilejson,
        summary="TileJSON 3.0.0 of an image, for map clients",
        tag="images",
        answer=TileJSON,
        errors=(400,),
        query=(
            TOKEN_QUERY,
            query_param("format", "extension of the tile URLs", {"enum": ["png", "jpg"]}),
        ),
    ),
    _image_read(
        "/images/{id}/preview.{fmt}",
        images.read_preview,
        "The whole image, downsampled (tif, npy, png, jpg)",
        query_param(
            "max_size",
            "longer side, px (default 1024)",
            {"type": "integer", "minimum": 1, "maximum": 4096},
        ),
    ),
    Route(
        method="GET",
        path="/images/{id}/gdal.xml",
        handler=images.gdal_xml,
        summary="A GDAL WMS description of the tiles of an image (rasterio, GDAL, QGIS)",
        tag="images",
        answer="application/xml",
        errors=(410,),
    ),
)
