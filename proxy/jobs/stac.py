"""The STAC Collection of a job's outputs: one Item per cell file, beside the files.

Built from each cell's header (CRS, transform, shape): read from the cell files in the
outputs folder, or from the catalog's done cells for an S3 store (no download). Files:
``collection.json`` and ``{name}_{n}.json`` per ``{name}_{n}.tif``, every link and asset
href relative (the folder can be moved or served as is). Each JSON file is written to a
temporary and renamed: atomic.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from pyproj import Transformer
from pystac.extensions.projection import ProjectionExtension
from pystac.stac_io import DefaultStacIO

from proxy.jobs.outputs import fsync_dir
from proxy.outputs.base import CellHeader

COLLECTION = "collection.json"
EDGE_SAMPLES = 16  # points per cell edge: edges curve in lon/lat


class AtomicStacIO(DefaultStacIO):
    """pystac's file I/O, each file written to a temporary then renamed."""

    def write_text_to_href(self, href: str, txt: str) -> None:
        """Write ``txt`` to the local file ``href`` atomically."""
        path = Path(href)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(txt)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_header(path: Path) -> CellHeader:
    """The header of a cell file (its CRS, transform and shape)."""
    with rasterio.open(path) as src:
        return CellHeader(
            name=path.name, crs=src.crs, transform=src.transform, width=src.width,
            height=src.height,
        )  # fmt: skip


def cell_item(
    header: CellHeader, created: dt.datetime, properties: Mapping[str, Any]
) -> pystac.Item:
    """The Item of one cell file: lon/lat footprint, projection, the file as ``data``."""
    crs, transform = header.crs, header.transform
    width, height = header.width, header.height
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES + 1)
    cols = np.concatenate([t, np.ones_like(t), t[::-1], np.zeros_like(t)]) * width
    rows = np.concatenate([np.zeros_like(t), t, np.ones_like(t), t[::-1]]) * height
    xs, ys = transform * (cols, rows)
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat))]
    item = pystac.Item(
        id=Path(header.name).stem,
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=bbox,
        datetime=created,
        properties=dict(properties),
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    if epsg is not None:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.wkt2 = crs.to_wkt()
    proj.transform = list(transform)[:6]
    proj.shape = [height, width]
    item.add_asset(
        "data",
        pystac.Asset(
            href=header.name,
            media_type=pystac.MediaType.COG,
            roles=["data"],
            title=header.name,
        ),
    )
    return item


def write_collection(
    folder: Path,
    collection_id: str,
    description: str,
    headers: Sequence[CellHeader],
    created: dt.datetime,
    properties: Mapping[str, Any],
) -> Path:
    """Write ``collection.json`` and one Item per cell file of ``headers`` (all in ``folder``)."""
    items = [cell_item(header, created, properties) for header in headers]
    boxes = np.array([item.bbox for item in items]) if items else None
    spatial = (
        [[float(boxes[:, 0].min()), float(boxes[:, 1].min()),
          float(boxes[:, 2].max()), float(boxes[:, 3].max())]]
        if boxes is not None
        else [[-180.0, -90.0, 180.0, 90.0]]
    )  # fmt: skip
    collection = pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(
            pystac.SpatialExtent(spatial), pystac.TemporalExtent([[created, created]])
        ),
        license="other",
    )
    for item in items:
        collection.add_item(item)
    collection.set_self_href(str(folder / COLLECTION))
    for item in items:
        item.set_self_href(str(folder / f"{item.id}.json"))
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=AtomicStacIO())
    fsync_dir(folder)
    return folder / COLLECTION
