"""Tile matrix sets shaped like real servers', written by hand (the tests' own definitions).

Each set is plain numbers, origin and cell size per matrix, so a test can compute the
tiles a read must request without the product's grid code; :meth:`SetDef.tms` builds
the morecantile set the fake WMTS renders with and a test source hands to the reader.

- ``SwissLV95``: EPSG:2056 national grid, top-left origin (2420000, 1350000), which is
  not the CRS bounds, cell sizes that do not halve, matrix widths that vary unevenly;
- ``MercatorInset``: EPSG:3857 with Web Mercator cell sizes but a top-left origin inside
  the CRS, a few kilometres north-west of the ground truth;
- ``MercatorBL`` and ``SwissBL``: bottom-left corner of origin (OGC TMS 2.0), which WMTS
  1.0.0 capabilities cannot express: served by tile path only.
"""

from __future__ import annotations

import math

import attrs
from morecantile import TileMatrixSet

OGC_PIXEL = 0.00028  # metres: the standard rendering pixel of scale denominators
MERCATOR_ZOOM0 = 2 * math.pi * 6378137.0 / 256  # Web Mercator zoom 0 cell size
MERCATOR_HALF = math.pi * 6378137.0
SWISS_CELLS = (250.0, 100.0, 50.0, 20.0, 8.0, 4.0, 2.0)
SWISS_EXTENT = (2420000.0, 1030000.0, 2900000.0, 1350000.0)  # left, bottom, right, top


@attrs.frozen
class SetDef:
    """A tile matrix set as numbers: one origin corner for all matrices, 256 px tiles."""

    ident: str
    epsg: int
    origin: tuple[float, float]  # (x, y) of the corner of origin, easting first
    corner: str  # "topLeft" | "bottomLeft"
    matrices: tuple[tuple[float, int, int], ...]  # (cell size, width, height), coarse to fine

    @property
    def bottom_left(self) -> bool:
        """Rows count up from the south."""
        return self.corner == "bottomLeft"

    def tms(self) -> TileMatrixSet:
        """The morecantile set (OGC TMS 2.0 JSON), matrix ids "0".."n-1"."""
        return TileMatrixSet.model_validate(
            {
                "id": self.ident,
                "crs": f"http://www.opengis.net/def/crs/EPSG/0/{self.epsg}",
                "orderedAxes": ["E", "N"] if self.epsg == 2056 else ["X", "Y"],
                "tileMatrices": [
                    {
                        "id": str(i),
                        "scaleDenominator": cell / OGC_PIXEL,
                        "cellSize": cell,
                        "cornerOfOrigin": self.corner,
                        "pointOfOrigin": list(self.origin),
                        "tileWidth": 256,
                        "tileHeight": 256,
                        "matrixWidth": width,
                        "matrixHeight": height,
                    }
                    for i, (cell, width, height) in enumerate(self.matrices)
                ],
            }
        )


def _swiss(corner: str) -> SetDef:
    left, bottom, right, top = SWISS_EXTENT
    matrices = tuple(
        (cell, math.ceil((right - left) / (256 * cell)), math.ceil((top - bottom) / (256 * cell)))
        for cell in SWISS_CELLS
    )
    origin = (left, top) if corner == "topLeft" else (left, bottom)
    return SetDef(f"Swiss{'LV95' if corner == 'topLeft' else 'BL'}", 2056, origin, corner, matrices)


def _mercator_inset() -> SetDef:
    cells = [MERCATOR_ZOOM0 / 2**z for z in range(12, 18)]
    matrices = tuple((c, math.ceil(13000 / (256 * c)), math.ceil(13000 / (256 * c))) for c in cells)
    return SetDef("MercatorInset", 3857, (730000.0, 5871000.0), "topLeft", matrices)


def _mercator_bottom_left() -> SetDef:
    matrices = tuple((MERCATOR_ZOOM0 / 2**z, 2**z, 2**z) for z in range(19))
    return SetDef("MercatorBL", 3857, (-MERCATOR_HALF, -MERCATOR_HALF), "bottomLeft", matrices)


SWISS = _swiss("topLeft")
SWISS_BL = _swiss("bottomLeft")
MERCATOR_INSET = _mercator_inset()
MERCATOR_BL = _mercator_bottom_left()
SHAPES = {s.ident: s for s in (SWISS, MERCATOR_INSET, MERCATOR_BL, SWISS_BL)}
