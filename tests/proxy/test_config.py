"""Settings: defaults, then a TOML file, then IMAGERY_PROXY_* variables; and serving on defaults."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.config import Settings, load_settings
from streaming.reader import ReadLimits


def test_defaults_need_no_config():
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.catalog_path == Path("data/catalog.sqlite")
    assert settings.api_keys == () and settings.allowed_networks == ()


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('port = 9000\napi_keys = ["a", "b"]\npreview_size = 300\n')
    env = {
        "IMAGERY_PROXY_PORT": "9100",
        "IMAGERY_PROXY_ALLOWED_NETWORKS": "10.0.0.0/8, 127.0.0.1/32",
    }
    settings = load_settings(path, env=env, preview_size=128)
    assert settings.port == 9100
    assert settings.api_keys == ("a", "b")
    assert settings.allowed_networks == ("10.0.0.0/8", "127.0.0.1/32")
    assert settings.preview_size == 128


def test_config_file_named_by_environment(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("executor_workers = 3\n")
    assert load_settings(env={"IMAGERY_PROXY_CONFIG": str(path)}).executor_workers == 3


def test_unknown_settings_are_an_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings(path, env={})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_runs_on_embedded_defaults(tmp_path):
    """The README's first command: no config, a data folder appears with a generated key."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    resp = await session.get(f"http://127.0.0.1:{port}/ready")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            assert resp.status == 200
            key = (tmp_path / "data" / "api-key").read_text().strip()
            assert (tmp_path / "data" / "catalog.sqlite").exists()
            resp = await session.get(f"http://127.0.0.1:{port}/servers")
            assert resp.status == 401
            resp = await session.get(f"http://127.0.0.1:{port}/servers", headers={"X-API-Key": key})
            assert resp.status == 200 and await resp.json() == {"servers": []}
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert b"Traceback" not in err


def test_read_budgets_default_to_the_library_s():
    settings, library = Settings(), ReadLimits()
    assert (settings.max_read_pixels, settings.max_read_requests, settings.max_image_pixels) == (
        library.max_pixels,
        library.max_requests,
        library.max_image_pixels,
    )
