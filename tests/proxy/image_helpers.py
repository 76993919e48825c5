"""Helpers of the image tests: an image record over the ground truth, stored directly."""

from __future__ import annotations

import math

from proxy.catalog.base import ImageRecord, NewImage
from proxy.keys import SERVICES
from tests.groundtruth import CENTER_LAT, CENTER_LON, CENTER_X, CENTER_Y, GT_RES

D = 0.01
AOI = {
    "type": "Polygon",
    "coordinates": [
        [
            [CENTER_LON - D, CENTER_LAT - D],
            [CENTER_LON + D, CENTER_LAT - D],
            [CENTER_LON + D, CENTER_LAT + D],
            [CENTER_LON - D, CENTER_LAT + D],
            [CENTER_LON - D, CENTER_LAT - D],
        ]
    ],
}
SIZE = 512


async def store_image(api, server_id: str, name: str = "gt") -> ImageRecord:
    """A 512 px EPSG:3857 image at zoom-15 pixels, centred on the ground truth."""
    services = api.server.app[SERVICES]
    left, top = CENTER_X - GT_RES * SIZE / 2, CENTER_Y + GT_RES * SIZE / 2
    return await services.catalog.images.create(
        NewImage(
            name=name,
            server_id=server_id,
            server_updated_at="2024-01-01T00:00:00.000+00:00",
            crs="EPSG:3857",
            transform=(GT_RES, 0.0, left, 0.0, -GT_RES, top),
            width=SIZE,
            height=SIZE,
            resolution_m=GT_RES * math.cos(math.radians(CENTER_LAT)),  # ground m/px
            aois={
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": AOI}],
            },
        )
    )
