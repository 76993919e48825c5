"""Each thread keeps one GDAL environment: rasterio starts none around our calls after it.

Started and stopped around every call, an environment costs about half of a small PNG's
decode.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import rasterio
import rasterio.env

from streaming.codecs import decode_pixels, encode_png
from streaming.gdal_env import thread_env


def test_a_thread_decoding_with_gdal_starts_one_environment_and_keeps_it(monkeypatch):
    starts: list[str] = []
    real = rasterio.env.defenv

    def counting(**options):  # type: ignore[no-untyped-def]
        starts.append(threading.current_thread().name)
        return real(**options)

    monkeypatch.setattr(rasterio.env, "defenv", counting)
    png = encode_png(np.full((16, 16, 4), 200, dtype=np.uint8))
    with ThreadPoolExecutor(1, thread_name_prefix="decoder") as pool:
        for _ in range(5):  # a PNG goes through GDAL (MemoryFile, open, read)
            assert pool.submit(decode_pixels, png).result().shape == (16, 16, 4)
        assert pool.submit(rasterio.env.hasenv).result()  # kept after the calls
    assert len(starts) == 1 and starts[0].startswith("decoder")


def test_a_callers_own_environment_is_left_as_it_is():
    def inside() -> str | None:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            thread_env()  # finds the caller's environment: nothing to do
            return rasterio.env.getenv().get("GDAL_TIFF_INTERNAL_MASK")

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(inside).result() is True
        assert not pool.submit(rasterio.env.hasenv).result()  # the caller's one ended
