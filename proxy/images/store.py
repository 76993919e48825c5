"""Images in the catalog: load them (404/410), show them, and place them on the map."""

from __future__ import annotations

from typing import Any

import attrs
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from proxy.api_models import ImportAsk
from proxy.catalog.base import ImageRecord, ServerRecord
from proxy.errors import NotFound, ServerDeleted
from proxy.images.errors import ImageNotFound
from proxy.services import Services
from streaming import grid as tiling
from streaming.layout import ImageGrid
from streaming.types import BBox

BANDS = 4  # red, green, blue, mask
DTYPE = "uint8"


async def load_image(services: Services, image_id: str) -> ImageRecord:
    """The image ``image_id``, else :class:`ImageNotFound` (404)."""
    record = await services.catalog.images.get(image_id)
    if record is None:
        raise ImageNotFound(
            f"no image with id {image_id[:64]!r}", hint="GET /images lists the images"
        )
    return record


async def import_server(services: Services, ask: ImportAsk) -> ServerRecord:
    """The server an import reads (404 when there is none)."""
    server = await services.catalog.servers.get(ask.server_id)
    if server is None:
        raise NotFound(
            f"no server with id {ask.server_id[:64]!r}", hint="GET /servers lists the servers"
        )
    return server


async def load_server(services: Services, image: ImageRecord) -> ServerRecord:
    """The server an image reads, else :class:`ServerDeleted` (410)."""
    server = await services.catalog.servers.get(image.server_id)
    if server is None:
        raise ServerDeleted(
            f"the server {image.server_id!r} of image {image.id!r} was deleted",
            hint="delete the image (DELETE /images/{id}), or import its AOIs again over "
            "another server",
            image_id=image.id,
            server_id=image.server_id,
        )
    return server


def image_crs(image: ImageRecord) -> CRS:
    """The image's CRS."""
    return CRS.from_user_input(image.crs)


def image_transform(image: ImageRecord) -> Affine:
    """The image's affine transform."""
    return Affine(*image.transform)


def image_grid(image: ImageRecord) -> ImageGrid:
    """The image's pixel grid; its ``resolution`` in CRS units per pixel, as the transform's.

    Not the record's ``resolution_m`` (ground metres): in EPSG:3857 the two differ by
    1/cos(latitude), and a bbox read snapped to the image's pixels landed 1.45x off at 46.5°.
    """
    return ImageGrid(
        image_crs(image), image_transform(image), image.width, image.height, abs(image.transform[0])
    )


def image_bounds(image: ImageRecord) -> BBox:
    """The image's bounds in its CRS."""
    t = image_transform(image)
    xs = (t.c, t.c + t.a * image.width)
    ys = (t.f, t.f + t.e * image.height)
    return BBox(min(xs), min(ys), max(xs), max(ys))


def crs_text(crs: CRS) -> str:
    """A CRS as stored: ``EPSG:n`` when it has one, else WKT (one line)."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


@attrs.frozen
class Footprint:
    """Where an image lies on WebMercatorQuad: bounds and the zoom of its detail."""

    lonlat: BBox
    mercator: BBox
    max_zoom: int


def footprint(image: ImageRecord) -> Footprint:
    """The image's WGS84 and Web Mercator bounds, and the finest zoom worth reading.

    That zoom is the coarsest whose pixels are at least as fine as the image's.
    """
    bounds = image_bounds(image)
    crs = image_crs(image)
    lonlat = BBox(*transform_bounds(crs, tiling.WGS84_CRS, *bounds, densify_pts=21))
    clamped = BBox(lonlat.left, max(lonlat.bottom, -85.05), lonlat.right, min(lonlat.top, 85.05))
    mercator = BBox(
        *transform_bounds(tiling.WGS84_CRS, tiling.WEB_MERCATOR_CRS, *clamped, densify_pts=21)
    )
    lat = (clamped.bottom + clamped.top) / 2
    res = tiling.mercator_res_for_ground(image.resolution_m, lat)
    zoom = tiling.zoom_for_resolution(tiling.web_mercator_tms(), res, 0, tiling.MAX_ZOOM)
    return Footprint(lonlat, mercator, zoom)


def image_view(image: ImageRecord) -> dict[str, Any]:
    """An image as the API shows it (SPEC §4 metadata)."""
    place = footprint(image)
    return {
        "id": image.id,
        "name": image.name,
        "server_id": image.server_id,
        "method": "streaming",
        "crs": image.crs,
        "transform": list(image.transform),
        "bounds": list(image_bounds(image)),
        "bounds_lonlat": list(place.lonlat),
        "width": image.width,
        "height": image.height,
        "bands": BANDS,
        "band_names": ["red", "green", "blue", "mask"],
        "dtype": DTYPE,
        "resolution": image.resolution_m,
        "max_zoom": place.max_zoom,
        "aois": image.aois,
        "created_at": image.created_at,
        "server_updated_at": image.server_updated_at,
    }


def tile_intersects(place: Footprint, z: int, x: int, y: int) -> bool:
    """Whether tile ``z/x/y`` overlaps the image (else it is answered empty, no read)."""
    left, top = _tile_corner(z, x, y)
    right, bottom = _tile_corner(z, x + 1, y + 1)
    m = place.mercator
    return left < m.right and right > m.left and bottom < m.top and top > m.bottom


def _tile_corner(z: int, x: int, y: int) -> tuple[float, float]:
    size = tiling.EARTH_CIRCUMFERENCE / 2**z
    half = tiling.MERCATOR_HALF_EXTENT
    return -half + x * size, half - y * size
