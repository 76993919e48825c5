"""The imagery-proxy command: help in-process, the rest run as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from rasterio.io import MemoryFile

from proxy.cli import main
from tests.groundtruth import CENTER_LAT, CENTER_LON
from tests.upstreams.xyz import xyz_app


async def cli(tmp_path, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "IMAGERY_PROXY_DATA_DIR": str(tmp_path / "data"),
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["servers"], ["servers", "add"], ["servers", "list"], ["servers", "test"]],
)
def test_help(capsys, command):
    # In-process: argparse prints the help and exits 0 before any settings are read.
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    usage = f"usage: imagery-proxy {' '.join(command)}".rstrip()
    assert capsys.readouterr().out.startswith(usage)


async def test_add_list_and_test_a_server(tmp_path, serve, renderer):
    base = await serve(xyz_app(renderer))
    code, out, err = await cli(
        tmp_path,
        "servers",
        "add",
        "--type",
        "xyz",
        "--name",
        "Local",
        "--url",
        base + "/a/tiles/{z}/{x}/{y}.png",
        "--set",
        "max_zoom=16",
        "--set",
        f'preview={{"lat": {CENTER_LAT}, "lon": {CENTER_LON}}}',
        "--set",
        'headers={"X-Token": "hush-hush-123"}',
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["max_zoom"] == 16 and created["headers"] == {"X-Token": "***"}

    code, out, _ = await cli(tmp_path, "servers", "list")
    assert code == 0 and created["id"] in out and "hush-hush" not in out

    preview = tmp_path / "p.png"
    code, out, err = await cli(
        tmp_path,
        "servers",
        "test",
        created["id"],
        "--resolution",
        "10",
        "--size",
        "128",
        "--output",
        str(preview),
    )
    assert code == 0, out + err
    report = json.loads(out)
    assert report["zoom"] == 14 and report["diagnostics"]["upstream_requests"] >= 1
    with MemoryFile(preview.read_bytes()) as mem, mem.open() as src:
        assert (src.width, src.height, src.count) == (128, 128, 4)


async def test_add_refuses_an_invalid_config(tmp_path):
    code, _, err = await cli(
        tmp_path, "servers", "add", "--type", "xyz", "--name", "x", "--url", "http://h/none.png"
    )
    assert code == 1
    assert json.loads(err)["error"]["code"] == "invalid_input"


async def test_failed_test_exits_non_zero(tmp_path):
    config = tmp_path / "s.json"
    config.write_text(
        json.dumps({"type": "xyz", "name": "x", "url": "http://127.0.0.1:9/{z}/{x}/{y}"})
    )
    code, out, _ = await cli(
        tmp_path,
        "servers",
        "test",
        str(config),
        "--lat",
        "1",
        "--lon",
        "1",
        "--output",
        str(tmp_path / "none.png"),
    )
    assert code == 1
    assert json.loads(out)["error"]["code"] == "upstream_unavailable"
    assert not (tmp_path / "none.png").exists()


def test_test_uses_the_probe_entry_point_in_process(tmp_path, monkeypatch, capsys):
    from proxy.cli import main

    monkeypatch.setenv("IMAGERY_PROXY_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "s.json"
    config.write_text(
        json.dumps({"type": "xyz", "name": "x", "url": "http://127.0.0.1:9/{z}/{x}/{y}"})
    )
    # no place given and none in the config: the request is refused before any request
    assert main(["servers", "test", str(config)]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "invalid_input"
    # an invalid unsaved config is reported with the findings about its URL
    config.write_text(json.dumps({"type": "xyz", "name": "x", "url": "http://h/latest.png"}))
    assert main(["servers", "test", str(config), "--lat", "1", "--lon", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["error"]["code"] == "invalid_input"
    assert [f["code"] for f in report["findings"]] == ["no_placeholders"]


async def test_add_without_type_guesses_it_from_the_url(tmp_path):
    url = "http://127.0.0.1:9/arcgis/rest/services/Ortho/MapServer/tile/{z}/{y}/{x}"
    code, out, err = await cli(tmp_path, "servers", "add", "--url", url)
    assert code == 0, err
    created = json.loads(out)
    assert created["type"] == "arcgis" and created["name"] == "Ortho/MapServer"
    assert created["url"] == "http://127.0.0.1:9/arcgis/rest/services/Ortho/MapServer"
    assert "ArcGIS" in err
