"""TileJSON 3.0.0 of a streaming image, for map clients."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from proxy.catalog.base import ImageRecord
from proxy.images.store import footprint


def image_tilejson(image: ImageRecord, base: str, token: str | None, ext: str) -> dict[str, Any]:
    """The document; tile URLs carry ``token`` when given."""
    place = footprint(image)
    url = f"{base}/images/{quote(image.id)}/tiles/{{z}}/{{x}}/{{y}}.{ext}"
    if token:
        url += "?token=" + quote(token, safe="")
    box = place.lonlat
    lon, lat = (box.left + box.right) / 2, (box.bottom + box.top) / 2
    return {
        "tilejson": "3.0.0",
        "name": image.name,
        "scheme": "xyz",
        "tiles": [url],
        "minzoom": 0,
        "maxzoom": place.max_zoom,
        "bounds": list(box),
        "center": [lon, lat, max(place.max_zoom - 2, 0)],
    }
