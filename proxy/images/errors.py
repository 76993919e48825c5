"""Errors of image requests; statuses follow their parent in :data:`proxy.errors.STATUS`."""

from __future__ import annotations

from proxy.errors import BadRequest, NotFound


class ImageNotFound(NotFound):
    """No image with that id."""

    code = "image_not_found"


class InvalidAOI(BadRequest):
    """The AOIs are not usable GeoJSON polygons (the message says what is wrong)."""

    code = "invalid_aoi"


class UnknownCRS(BadRequest):
    """A CRS that PROJ does not know."""

    code = "unknown_crs"


class WindowOutside(BadRequest):
    """A pixel window partly or fully outside the image."""

    code = "window_outside"


class InvalidSize(BadRequest):
    """A size, offset or resolution that is not a number in its range."""

    code = "invalid_size"


class InvalidBBox(BadRequest):
    """A bbox that is not four finite numbers with min < max."""

    code = "invalid_bbox"
