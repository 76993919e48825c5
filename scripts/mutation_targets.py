"""What ``scripts/mutation.py`` mutates: the target modules and functions, each with its
tests, and the mutation operators (operator swaps, paired names, calls).

Kept apart from the runner so the list can grow without touching how mutants are run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

STREAMING = ("tests/streaming/test_grid.py", "tests/streaming/test_tms_shapes.py")
READER = ("tests/streaming/test_reader.py", *STREAMING)
MUTANT_TESTS = (
    "tests/streaming/test_grid_mutants.py",
    "tests/streaming/test_reader_mutants.py",
    "tests/proxy/test_adapter_arithmetic.py",
)


@dataclass(frozen=True)
class Target:
    """A module, the functions of it to mutate (``<module>``: top-level constants), its tests."""

    path: str
    scopes: tuple[str, ...]
    tests: tuple[str, ...]


TARGETS = (
    Target(
        "streaming/grid.py",
        (
            "<module>",
            "web_mercator_tms",
            "mercator_resolution",
            "ground_resolution",
            "mercator_res_for_ground",
            "matrix_resolution",
            "zoom_for_resolution",
            "tile_range",
            "tiles_for_bbox",
            "tile_transform",
            "_origin_xy",
            "point_grid",
        ),
        (*READER, "tests/proxy/test_probe_shapes.py", "tests/proxy/test_upstream_xyz.py"),
    ),
    Target(
        "streaming/reader.py",
        (
            "SourceReader._read_tiles",
            "SourceReader._read_bbox",
            "_tile_piece",
            "preview_grid",
        ),
        (
            *READER,
            "tests/proxy/test_probe_shapes.py",
            "tests/proxy/test_upstream_wms.py",
            "tests/proxy/test_upstream_arcgis.py",
        ),
    ),
    Target(
        "streaming/plan.py",
        ("split_request", "part_bbox", "_bounds"),
        (
            *READER,
            "tests/proxy/test_probe_shapes.py",
            "tests/proxy/test_upstream_wms.py",
            "tests/proxy/test_upstream_arcgis.py",
        ),
    ),
    Target(
        "streaming/mosaic.py",
        ("compose", "_paste", "warp"),
        (*READER, "tests/proxy/test_upstream_wms.py"),
    ),
    Target(
        "streaming/resample.py",
        ("downsample_tiles", "crop_tile", "_sized"),
        ("tests/proxy/test_upstream_arcgis.py",),
    ),
    Target(
        "proxy/upstream/xyz.py",
        ("tile_url", "XYZSource.url_for", "XYZSource.fetch_tile"),
        ("tests/proxy/test_upstream_xyz.py",),
    ),
    Target(  # quadkeys and {-y} rows, moved here from xyz.py
        "proxy/upstream/templates.py",
        ("quadkey", "fill"),
        ("tests/proxy/test_upstream_xyz.py", "tests/proxy/test_pasted_urls.py"),
    ),
    Target(
        "proxy/upstream/wmts.py",
        ("TileEndpoint.request", "WMTSSource.request_for", "_zoom_range"),
        ("tests/proxy/test_upstream_wmts.py", "tests/streaming/test_tms_shapes.py"),
    ),
    Target(
        "proxy/upstream/wms.py",
        ("bbox_param", "WMSSource.getmap_params"),
        ("tests/proxy/test_upstream_wms.py",),
    ),
    Target(
        "proxy/upstream/arcgis.py",
        (
            "ArcGISTileSource.min_zoom",
            "ArcGISTileSource.max_zoom",
            "ArcGISTileSource.fetch_tile",
            "ArcGISTileSource._fetch",
            "ArcGISTileSource._from_other_level",
            "ArcGISExportSource.params",
        ),
        ("tests/proxy/test_upstream_arcgis.py",),
    ),
    Target(
        "proxy/upstream/crs.py",
        (
            "rasterio_crs",
            "northing_first",
            "crs_from_identifier",
            "crs_from_wkid",
            "meters_per_unit",
            "axis_inverted",
            "corner_in_axis_order",
        ),
        (
            "tests/proxy/test_upstream_crs.py",
            "tests/proxy/test_upstream_wms.py",
            "tests/proxy/test_upstream_wmts.py",
            "tests/streaming/test_tms_shapes.py",
        ),
    ),
)

BINOPS: dict[type[ast.operator], tuple[type[ast.operator], ...]] = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult,),
    ast.FloorDiv: (ast.Mult,),
    ast.Mod: (ast.FloorDiv,),
    ast.Pow: (ast.Mult,),
    ast.LShift: (ast.RShift,),
    ast.RShift: (ast.LShift,),
    ast.BitAnd: (ast.BitOr,),
    ast.BitOr: (ast.BitAnd,),
}
COMPARES: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
# Names (attributes, variables) that mean one of two axes, ends or sizes: swapping them
# is the classic pixel bug.
PAIRS = (
    ("x", "y"),
    ("left", "right"),
    ("bottom", "top"),
    ("left", "bottom"),
    ("width", "height"),
    ("tileWidth", "tileHeight"),
    ("matrixWidth", "matrixHeight"),
    ("matrix_width", "matrix_height"),
    ("col", "row"),
    ("cols", "rows"),
    ("col0", "col1"),
    ("row0", "row1"),
    ("col_off", "row_off"),
    ("r0", "r1"),
    ("c0", "c1"),
    ("i", "j"),
    ("a", "b"),
    ("a", "e"),
    ("c", "f"),
    ("start", "stop"),
    ("first", "last"),
    ("origin_x", "origin_y"),
    ("span_x", "span_y"),
    ("min_zoom", "max_zoom"),
    ("xs", "ys"),
    ("nx", "ny"),
)
SWAPS: dict[str, set[str]] = {}
for _one, _other in PAIRS:
    SWAPS.setdefault(_one, set()).add(_other)
    SWAPS.setdefault(_other, set()).add(_one)
NUMERIC = (ast.Name, ast.Attribute, ast.BinOp, ast.UnaryOp, ast.Subscript)
CALL_SWAPS = {"max": "min", "min": "max", "floor": "ceil", "ceil": "floor", "round": "int"}
