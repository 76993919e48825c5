"""AOI parsing: every accepted shape, and a precise AOIError for every bad one."""

from __future__ import annotations

import json

import pytest
import shapely

from streaming.aoi import AOIs, check_inside, parse_aois
from streaming.errors import AOIError

SQUARE = [[6.60, 46.50], [6.66, 46.50], [6.66, 46.54], [6.60, 46.54], [6.60, 46.50]]
HOLE = [[6.62, 46.51], [6.64, 46.51], [6.64, 46.53], [6.62, 46.53], [6.62, 46.51]]
EAST = [[6.70, 46.50], [6.72, 46.50], [6.72, 46.52], [6.70, 46.50]]


def polygon(*rings):
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def feature(geometry, **props):
    return {"type": "Feature", "properties": props, "geometry": geometry}


def error(data) -> AOIError:
    with pytest.raises(AOIError) as info:
        parse_aois(data)
    assert info.value.code == "invalid_aoi"
    return info.value


def test_a_bare_polygon_with_a_hole():
    aois = parse_aois(polygon(SQUARE, HOLE))
    assert aois.geometry.geom_type == "MultiPolygon"
    assert aois.geometry.area == pytest.approx(0.06 * 0.04 - 0.02 * 0.02)
    assert aois.bounds() == pytest.approx((6.60, 46.50, 6.66, 46.54))
    assert aois.centre() == pytest.approx((6.63, 46.52))
    assert len(aois.parts) == 1


def test_a_feature_collection_of_a_polygon_and_a_multipolygon_is_united():
    multi = {"type": "MultiPolygon", "coordinates": [[EAST], [SQUARE, HOLE]]}
    data = {"type": "FeatureCollection", "features": [feature(polygon(SQUARE)), feature(multi)]}
    aois = parse_aois(data)
    assert len(aois.parts) == 2
    assert aois.parts[1].geom_type == "MultiPolygon"
    # the hole of the second feature is covered by the first: the union has none
    assert aois.geometry.area == pytest.approx(0.06 * 0.04 + 0.02 * 0.02 / 2)
    assert aois.bounds() == pytest.approx((6.60, 46.50, 6.72, 46.54))


def test_a_feature_and_json_text_are_accepted():
    one = parse_aois(feature(polygon(SQUARE, HOLE), name="x"))
    text = parse_aois(json.dumps(polygon(SQUARE, HOLE)))
    assert one.geometry.equals(text.geometry)


def test_to_geojson_gives_the_parts_back():
    aois = parse_aois(polygon(SQUARE, HOLE))
    data = aois.to_geojson()
    assert data["type"] == "FeatureCollection"
    json.dumps(data)  # plain JSON
    again = parse_aois(data)
    assert again.geometry.equals(aois.geometry)
    assert isinstance(again, AOIs)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("{not json", ["not JSON"]),
        ([1, 2], ["not an object"]),
        ({"coordinates": []}, ['no "type"']),
        ({"type": "Circle", "coordinates": [1, 2]}, ['unknown type "Circle"']),
        ({"type": "FeatureCollection"}, ['"features" list']),
        (
            {"type": "FeatureCollection", "features": [polygon(SQUARE)]},
            ["features[0] is a Polygon, not a Feature"],
        ),
        (
            polygon([[6.6, 46.5], [6.7, 46.5], [6.7, 46.6], [6.6, 46.6]]),
            ["coordinates of the geometry", "same start and end"],
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    feature(polygon(SQUARE)),
                    feature(polygon([[6.6, 46.5], [6.7, 46.5], ["x", 46.6], [6.6, 46.5]])),
                ],
            },
            ["features[1].geometry.coordinates[0][2][0]", "valid number"],
        ),
        (
            polygon([[6.6, 46.5], [6.7, 46.5], [6.6, 46.5]]),
            ["coordinates[0] of the geometry", "at least 4"],
        ),
    ],
)
def test_invalid_geojson_says_what_and_where(data, words):
    message = error(data).message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [6.6, 46.5]},
        {"type": "LineString", "coordinates": [[6.6, 46.5], [6.7, 46.5]]},
        {"type": "GeometryCollection", "geometries": []},
    ],
)
def test_not_a_polygon(geometry):
    e = error(feature(geometry))
    assert f"is a {geometry['type']}, not a Polygon or MultiPolygon" in e.message
    assert e.hint is not None


@pytest.mark.parametrize(
    "data",
    [
        {"type": "FeatureCollection", "features": []},
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Polygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": []},
    ],
)
def test_empty(data):
    assert "empty" in error(data).message


def test_zero_area():
    flat = polygon([[6.6, 46.5], [6.7, 46.5], [6.65, 46.5], [6.6, 46.5]])
    assert "zero area" in error(flat).message


def test_self_intersecting_names_the_point():
    bow_tie = polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]])
    e = error(bow_tie)
    assert "not a valid polygon: Self-intersection[0.5 0.5]" in e.message


def test_a_hole_crossing_its_shell_is_invalid():
    crossing = [[6.65, 46.51], [6.70, 46.51], [6.70, 46.53], [6.65, 46.51]]
    assert "not a valid polygon" in error(polygon(SQUARE, crossing)).message


def test_coordinates_outside_the_ranges():
    e = error(polygon([[100.6, 46.5], [100.7, 46.5], [100.7, 96.6], [100.6, 46.5]]))
    assert "[100.7, 96.6] outside longitude -180..180, latitude -90..90" in e.message
    assert "swapped" not in (e.hint or "")


def test_swapped_coordinates_get_the_hint():
    tokyo = [[35.6, 139.7], [35.7, 139.7], [35.7, 139.8], [35.6, 139.7]]
    e = error(polygon(tokyo))
    assert "outside longitude" in e.message
    assert "[longitude, latitude]" in (e.hint or "") and "swapped" in (e.hint or "")


def test_non_finite_coordinates():
    data = '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [NaN, 1], [0, 0]]]}'
    assert "finite" in error(data).message


def test_check_inside_a_server_hints_at_swapped_axes():
    server = (6.5, 46.4, 6.8, 46.6)
    check_inside(parse_aois(polygon(SQUARE)), server, "the server")  # inside: no error
    swapped = [[y, x] for x, y in SQUARE]
    with pytest.raises(AOIError) as info:
        check_inside(parse_aois(polygon(swapped)), server, "the server")
    assert "outside the server's bounds" in info.value.message
    assert "swapped" in (info.value.hint or "")
    far = shapely.affinity.translate(shapely.Polygon(SQUARE), 10, 0)
    with pytest.raises(AOIError) as info:
        check_inside(parse_aois(shapely.geometry.mapping(far)), server, "the server")
    assert "swapped" not in (info.value.hint or "")
