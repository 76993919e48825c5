"""The image commands of the CLI that need no library: list, and their errors."""

from __future__ import annotations

import asyncio

import orjson

from proxy.catalog.base import NewImage
from proxy.cli import main
from proxy.config import load_settings
from proxy.services import open_services


def store(data_dir) -> str:
    async def run() -> str:
        async with open_services(load_settings(env={}, data_dir=data_dir)) as services:
            record = await services.catalog.images.create(
                NewImage(
                    name="field",
                    server_id="s1",
                    server_updated_at="2024-01-01",
                    crs="EPSG:3857",
                    transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0),
                    width=100,
                    height=50,
                    resolution_m=10.0,
                    aois={"type": "FeatureCollection", "features": []},
                )
            )
            return record.id

    return asyncio.run(run())


def test_images_list_prints_the_images(tmp_path, capsys):
    image_id = store(tmp_path)
    assert main(["--data-dir", str(tmp_path), "images", "list", "--json"]) == 0
    views = orjson.loads(capsys.readouterr().out)
    assert [(v["id"], v["width"], v["height"]) for v in views] == [(image_id, 100, 50)]
    assert main(["--data-dir", str(tmp_path), "images", "list"]) == 0
    out = capsys.readouterr().out
    assert image_id in out and "100x50" in out and "field" in out


def test_images_read_refuses_an_unknown_format_and_a_bad_bbox(tmp_path, capsys):
    image_id = store(tmp_path)
    base = ["--data-dir", str(tmp_path), "images", "read", image_id]
    assert main([*base, "--bbox", "0,0,1,1", "--output", str(tmp_path / "x.gif")]) == 1
    assert "unsupported_format" in capsys.readouterr().err
    assert main([*base, "--bbox", "0,0,1", "--output", str(tmp_path / "x.tif")]) == 1
    assert "invalid_bbox" in capsys.readouterr().err
