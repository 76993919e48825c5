"""Streaming imagery: virtual rasters over remote tile/bbox sources, with no HTTP layer."""
