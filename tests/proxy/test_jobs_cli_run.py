"""``import --method download --wait`` and ``jobs run``: materializations run by the CLI
itself, with no service, against a fake upstream served from another thread."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from proxy.cli import main
from tests.proxy.image_helpers import AOI
from tests.upstreams.xyz import xyz_app


@pytest.fixture
def upstream_url(renderer) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(xyz_app(renderer))

    async def serve() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/a/tiles/{{z}}/{{x}}/{{y}}.png"

    yield asyncio.run_coroutine_threadsafe(serve(), loop).result(30)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def documents(text: str) -> list[Any]:
    """The JSON documents printed one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def test_a_download_import_waits_for_its_job_then_jobs_run_materializes_again(
    tmp_path, capsys, monkeypatch, upstream_url
):
    monkeypatch.setenv("IMAGERY_PROXY_ALLOWED_NETWORKS", "127.0.0.0/8")
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "servers", "add", "--url", upstream_url, "--resolution", "4"]) == 0
    server_id = orjson.loads(capsys.readouterr().out)["id"]
    aoi = tmp_path / "aoi.geojson"
    aoi.write_bytes(orjson.dumps(AOI))

    argv = ["import", "--server", server_id, "--name", "cli field", "--aoi", str(aoi)]
    options = ["--method", "download", "--max-cell-pixels", "256", "--wait"]
    assert main([*data, *argv, *options]) == 0
    out, err = capsys.readouterr()
    started, ended = documents(out)
    assert set(started) == {"image", "job"} and ended["id"] == started["job"]["id"]
    total = ended["cells_total"]
    assert ended["state"] == "done" and ended["cells"]["done"] == total >= 2
    assert f"{total}/{total} cells" in err and "done" in err  # the progress bar's last line
    folder = tmp_path / "data" / "outputs" / ended["outputs"]["folder"]
    assert len(list(folder.glob("cli_field_*.tif"))) == total
    assert (folder / "collection.json").exists()

    image_id = started["image"]["id"]
    assert main([*data, "jobs", "run", image_id, "--compression", "zstd"]) == 0
    again = documents(capsys.readouterr().out)[-1]
    assert again["state"] == "done" and again["params"]["compression"] == "zstd"
    assert again["id"] != ended["id"]
    assert main([*data, "jobs", "list", "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [j["id"] for j in listed] == [again["id"], ended["id"]]
