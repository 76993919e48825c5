"""Per-call cost of each candidate codec library, to pick one per format by measurement.

Run: python -m benchmarks.bench_codecs [--repeat N]
Inputs are ground-truth tiles (256 px JPEG q90 and PNG, as upstreams send them) and a
512 px RGBA preview (opaque, and with a transparent border). Each row decodes to, or
encodes from, the array layout the library wants, plus what it costs to get there from
our band-first (4, h, w) layout where that matters.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import PIL
import rasterio
import simplejpeg
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from streaming import codecs, grid
from tests.groundtruth import CENTER_LAT, CENTER_LON, write_ground_truth
from tests.upstreams.render import GroundTruthRenderer

warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def per_call_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1000, 3)


def gdal_decode(data: bytes) -> np.ndarray:
    with MemoryFile(data) as mem, mem.open() as src:
        return src.read()  # type: ignore[no-any-return]


def gdal_encode(bands: np.ndarray, driver: str, **options: int) -> bytes:
    count, height, width = bands.shape
    with MemoryFile() as mem:
        with mem.open(
            driver=driver, width=width, height=height, count=count, dtype="uint8", **options
        ) as dst:
            dst.write(bands)
        return bytes(mem.read())


def pil_decode(data: bytes, reduce: int = 1) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if reduce > 1:
        image.draft("RGB", (image.width // reduce, image.height // reduce))
    return np.asarray(image)


def pil_encode(hwc: np.ndarray, fmt: str, **options: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(hwc).save(out, fmt, **options)
    return out.getvalue()


def inputs(tmp: Path) -> tuple[bytes, bytes, np.ndarray]:
    renderer = GroundTruthRenderer(write_ground_truth(tmp / "gt.tif"))
    tms = grid.web_mercator_tms()
    x, y, _ = tms.tile(CENTER_LON, CENTER_LAT, 14)
    jpeg = renderer.tile(tms, x, y, 14, 256, "jpeg")
    png = renderer.tile(tms, x, y, 14, 256, "png")
    assert jpeg is not None and png is not None
    bands = np.concatenate(
        [gdal_decode(renderer.tile(tms, x + dx, y, 14, 256) or b"") for dx in (0, 1)], axis=2
    )
    bands = np.concatenate([bands, bands], axis=1)  # 512 x 512 RGBA
    return jpeg, png, bands


def versions() -> str:
    return (
        f"Pillow {PIL.__version__}, simplejpeg {simplejpeg.__version__}, "
        f"imagecodecs {imagecodecs.__version__}, rasterio {rasterio.__version__} "
        f"(GDAL {rasterio.__gdal_version__})"
    )


def measure(repeat: int) -> dict[str, float]:
    """Per-call medians (ms) of every candidate and of ours, one row each."""
    with tempfile.TemporaryDirectory() as tmp:
        jpeg, png, rgba = inputs(Path(tmp))
    opaque = rgba.copy()
    opaque[3] = 255
    hwc = np.ascontiguousarray(opaque.transpose(1, 2, 0))
    rgb = np.ascontiguousarray(hwc[..., :3])
    rows: dict[str, float] = {}
    # Decode a 256 px JPEG tile (to RGB pixels).
    rows["decode jpeg 256: GDAL MemoryFile"] = per_call_ms(lambda: gdal_decode(jpeg), repeat)
    rows["decode jpeg 256: Pillow"] = per_call_ms(lambda: pil_decode(jpeg), repeat)
    rows["decode jpeg 256: simplejpeg"] = per_call_ms(
        lambda: simplejpeg.decode_jpeg(jpeg, "RGB"), repeat
    )
    rows["decode jpeg 256: imagecodecs"] = per_call_ms(
        lambda: imagecodecs.jpeg8_decode(jpeg), repeat
    )
    for r in (2, 4):
        rows[f"decode jpeg 256 at 1/{r}: Pillow draft"] = per_call_ms(
            lambda r=r: pil_decode(jpeg, r), repeat
        )
        rows[f"decode jpeg 256 at 1/{r}: simplejpeg"] = per_call_ms(
            lambda r=r: simplejpeg.decode_jpeg(
                jpeg, "RGB", min_height=256 // r, min_width=256 // r
            ),
            repeat,
        )
    rows["decode jpeg 256: ours (codecs.decode)"] = per_call_ms(lambda: codecs.decode(jpeg), repeat)
    # Decode a 256 px PNG tile (RGBA).
    rows["decode png 256: GDAL MemoryFile"] = per_call_ms(lambda: gdal_decode(png), repeat)
    rows["decode png 256: Pillow"] = per_call_ms(lambda: pil_decode(png), repeat)
    rows["decode png 256: imagecodecs"] = per_call_ms(lambda: imagecodecs.png_decode(png), repeat)
    rows["decode png 256: ours (codecs.decode)"] = per_call_ms(lambda: codecs.decode(png), repeat)
    # Encode a 512 x 512 preview.
    rows["encode jpeg 512 q90: GDAL MemoryFile"] = per_call_ms(
        lambda: gdal_encode(opaque[:3], "JPEG", quality=90), repeat
    )
    rows["encode jpeg 512 q90: Pillow"] = per_call_ms(
        lambda: pil_encode(rgb, "JPEG", quality=90), repeat
    )
    rows["encode jpeg 512 q90: simplejpeg"] = per_call_ms(
        lambda: simplejpeg.encode_jpeg(hwc, 90, "RGBA", colorsubsampling="420"), repeat
    )
    rows["encode jpeg 512 q90: imagecodecs"] = per_call_ms(
        lambda: imagecodecs.jpeg8_encode(rgb, level=90), repeat
    )
    rows["encode jpeg 512 q90: ours (codecs.encode)"] = per_call_ms(
        lambda: codecs.encode(hwc[..., :3].transpose(2, 0, 1), hwc[..., 3], "jpeg"), repeat
    )
    rgba_hwc = np.ascontiguousarray(rgba.transpose(1, 2, 0))
    for level in (2, 3):  # the other fast levels, for the png_compression setting
        rows[f"encode png 512 rgba level {level}: Pillow"] = per_call_ms(
            lambda level=level: pil_encode(rgba_hwc, "PNG", compress_level=level), repeat
        )
    for level in (1, 6):
        rows[f"encode png 512 rgba level {level}: GDAL MemoryFile"] = per_call_ms(
            lambda level=level: gdal_encode(rgba, "PNG", zlevel=level), repeat
        )
        rows[f"encode png 512 rgba level {level}: Pillow"] = per_call_ms(
            lambda level=level: pil_encode(rgba_hwc, "PNG", compress_level=level), repeat
        )
        rows[f"encode png 512 rgba level {level}: imagecodecs"] = per_call_ms(
            lambda level=level: imagecodecs.png_encode(rgba_hwc, level=level), repeat
        )
    rows["encode png 512 rgba: ours (codecs.encode, default level)"] = per_call_ms(
        lambda: codecs.encode(rgba_hwc[..., :3].transpose(2, 0, 1), rgba_hwc[..., 3], "png"),
        repeat,
    )
    for method in (0, 4):
        rows[f"encode webp 512 rgba q85 method {method}: Pillow"] = per_call_ms(
            lambda method=method: pil_encode(rgba_hwc, "WEBP", quality=85, method=method), repeat
        )
    rows["encode webp 512 rgba q85: imagecodecs"] = per_call_ms(
        lambda: imagecodecs.webp_encode(rgba_hwc, level=85), repeat
    )
    rows["encode webp 512 rgba: ours (codecs.encode)"] = per_call_ms(
        lambda: codecs.encode(rgba_hwc[..., :3].transpose(2, 0, 1), rgba_hwc[..., 3], "webp"),
        repeat,
    )
    rows["band-first (4,h,w) -> interleaved (h,w,4) copy, 512"] = per_call_ms(
        lambda: np.ascontiguousarray(rgba.transpose(1, 2, 0)), repeat
    )
    return rows


def main(repeat: int) -> None:
    rows = measure(repeat)
    print(f"# {platform.machine()}, Python {platform.python_version()}, {versions()}")
    for key, value in rows.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    main(parser.parse_args().repeat)
