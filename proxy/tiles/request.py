"""Parse a tile path: ``{z}/{x}/{y}[@2x][.ext]`` in WebMercatorQuad."""

from __future__ import annotations

import re

import attrs

from proxy.errors import InvalidTile, UnknownFormat
from streaming.grid import MAX_ZOOM

# Extension -> the format it asks for (jpeg and jpg are one).
FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
_Y = re.compile(r"([0-9]{1,10})(@2x)?(?:\.([A-Za-z0-9]{1,10}))?")
_INT = re.compile(r"[0-9]{1,10}")


@attrs.frozen
class TileAsk:
    """One tile asked for: where, at which pixel scale, in which format."""

    z: int
    x: int
    y: int
    scale: int = 1  # 2 for @2x: 512 px tiles
    format: str | None = None  # None: the upstream's own format

    @property
    def tile_px(self) -> int:
        """The tile's width and height in pixels."""
        return 256 * self.scale


def parse_tile(z: str, x: str, y: str) -> TileAsk:
    """The tile of a path's ``z``, ``x`` and ``y`` parts; 400 when it is not a tile."""
    match = _Y.fullmatch(y)
    if not (_INT.fullmatch(z) and _INT.fullmatch(x) and match):
        raise InvalidTile(f"{z}/{x}/{y} is not a tile: z, x and y are whole numbers")
    ext = match.group(3)
    fmt = None
    if ext is not None:
        fmt = FORMATS.get(ext.lower())
        if fmt is None:
            raise UnknownFormat(f"tiles are not served as .{ext}")
    zi, xi, yi = int(z), int(x), int(match.group(1))
    if zi > MAX_ZOOM:
        raise InvalidTile(f"zoom {zi} is past WebMercatorQuad's deepest zoom ({MAX_ZOOM})")
    side = 1 << zi
    if xi >= side or yi >= side:
        raise InvalidTile(
            f"tile {zi}/{xi}/{yi} is outside the matrix: x and y are 0..{side - 1} at zoom {zi}"
        )
    return TileAsk(zi, xi, yi, 2 if match.group(2) else 1, fmt)
