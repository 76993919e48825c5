"""A stored image's grid and AOIs are parsed once: records never change, reads reuse them."""

from __future__ import annotations

from proxy.catalog.base import ImageRecord
from proxy.images.service import parsed_image

AOI = {"type": "Polygon", "coordinates": [[[8, 46], [8.1, 46], [8.1, 46.1], [8, 46.1], [8, 46]]]}


def record(image_id: str, width: int = 100) -> ImageRecord:
    return ImageRecord(
        id=image_id,
        name="n",
        server_id="s",
        server_updated_at="t",
        crs="EPSG:3857",
        transform=(10.0, 0.0, 890000.0, 0.0, -10.0, 5800000.0),
        width=width,
        height=80,
        resolution_m=10.0,
        aois=AOI,
        created_at="t",
    )


def test_a_record_read_again_reuses_its_grid_and_aois():
    grid, aois = parsed_image(record("img1"))
    again = parsed_image(record("img1"))  # a new record object, as each request loads one
    assert again[0] is grid and again[1] is aois
    assert (grid.width, grid.height, grid.crs.to_epsg()) == (100, 80, 3857)
    assert aois.geometry.bounds == (8.0, 46.0, 8.1, 46.1)


def test_other_records_get_their_own():
    assert parsed_image(record("img2"))[1] is not parsed_image(record("img3"))[1]
    assert parsed_image(record("img4", width=50))[0].width == 50
