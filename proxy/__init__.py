"""imagery-proxy: the HTTP service (upstream adapters, tile cache, API, catalog)."""

import os

# GDAL's block cache defaults to 5 % of the RAM: a COG copy of a 16384² cell filled 1.5 GB
# of it (benchmarks/RESULTS.md, materializer). It is bounded once for the process, before
# any GDAL I/O: changing it later (rasterio.Env(GDAL_CACHEMAX=...) around each write)
# flushes blocks that other threads' rasterize and warp hold, which aborted the process
# when a job wrote a COG while reads masked their windows.
os.environ.setdefault("GDAL_CACHEMAX", "64")
