"""Which cached tiles a cache deletion names: a zoom range, or a WGS84 bbox per zoom."""

from __future__ import annotations

import attrs
from pyproj import Transformer

from proxy.errors import BadRequest
from proxy.tiles.cached import BBOX_NAMESPACE
from proxy.tiles.codec import MEDIA
from proxy.tiles.matrix import cell_metres, mercator_zoom
from proxy.tiles.plan import TilePlan
from streaming import grid
from streaming.types import BBox

_MAX_LAT = 85.0511287798066
# Our tiles' namespaces, by tile size (see proxy.tiles.service.namespace).
RENDERED = {
    256: frozenset(f"rendered:{fmt}" for fmt in MEDIA),
    512: frozenset(f"rendered:{fmt}@2x" for fmt in MEDIA),
}


@attrs.frozen
class Selection:
    """One call of :meth:`TileCache.delete`: a namespace group, zooms, and tile ranges."""

    namespaces: frozenset[str] | None  # None: every namespace
    zooms: range | None
    xs: range | None = None
    ys: range | None = None


def parse_bbox(text: str) -> BBox:
    """``minlon,minlat,maxlon,maxlat`` in WGS84 degrees."""
    try:
        left, bottom, right, top = (float(v) for v in text.split(","))
    except ValueError:
        raise BadRequest("bbox is minlon,minlat,maxlon,maxlat in degrees") from None
    if not (-180 <= left < right <= 180 and -90 <= bottom < top <= 90):
        raise BadRequest("bbox is minlon,minlat,maxlon,maxlat with min < max, in degrees")
    return BBox(left, max(bottom, -_MAX_LAT), right, min(top, _MAX_LAT))


def select(plan: TilePlan, zooms: range | None, bbox: BBox | None) -> list[Selection]:
    """The deletions of a server's entries in ``zooms`` (WebMercatorQuad) inside ``bbox``.

    Our tiles (``rendered:*``) are WebMercatorQuad tiles; the upstream's own tiles
    (``tile``) are in the source's matrices: their matrices are those whose cell size
    falls in the zoom range, and their tile ranges come from the bbox in the set's CRS.
    A bbox source's answers (``bbox``, kept by :class:`CachedBBoxSource` for image reads)
    are keyed by a digest of the request, which says neither where nor how fine it is:
    any of them may hold pixels of the area, so every partial deletion takes them all.
    """
    if zooms is None and bbox is None:
        return [Selection(None, None)]
    hi = grid.MAX_ZOOM if zooms is None else min(zooms.stop - 1, grid.MAX_ZOOM)
    lo = 0 if zooms is None else zooms.start
    if bbox is None:
        out = [Selection(RENDERED[256] | RENDERED[512], range(lo, hi + 1))]
    else:
        merc = BBox(*_to(grid.web_mercator_tms(256)).transform_bounds(*bbox))
        out = []
        for z in range(lo, hi + 1):
            for px, names in RENDERED.items():
                cols, rows = grid.tile_range(grid.web_mercator_tms(px), merc, z)
                out.append(Selection(names, range(z, z + 1), cols, rows))
    cached = plan.cached
    if cached is None:  # a bbox source: its answers cannot be placed (see above)
        out.append(Selection(frozenset({BBOX_NAMESPACE}), None))
    else:
        tms = cached.tms
        for index in range(cached.min_zoom, cached.max_zoom + 1):
            z = round(mercator_zoom(cell_metres(tms, index), tms.matrix(index).tileWidth))
            if not lo <= z <= hi:
                continue
            if bbox is None:
                out.append(Selection(frozenset({"tile"}), range(index, index + 1)))
                continue
            local = BBox(*_to(tms).transform_bounds(*bbox, densify_pts=21))
            cols, rows = grid.tile_range(tms, local, index)
            out.append(Selection(frozenset({"tile"}), range(index, index + 1), cols, rows))
    return out


def _to(tms: object) -> Transformer:
    crs = tms.rasterio_crs  # type: ignore[attr-defined]
    return Transformer.from_crs(4326, crs, always_xy=True)
