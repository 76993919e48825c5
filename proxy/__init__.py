"""imagery-proxy: the HTTP service (upstream adapters, tile cache, API, catalog)."""
