"""Tiles for map clients: WebMercatorQuad tiles of every saved server, through the cache.

One job per module: :mod:`.request` parses a tile path, :mod:`.matrix` relates a source's
grid to WebMercatorQuad, :mod:`.cached` puts the cache under a tile source,
:mod:`.passthrough`, :mod:`.rendered` and :mod:`.metatiles` make a tile each their way,
:mod:`.service` picks the way per server, :mod:`.codec` holds every encode/decode call,
:mod:`.tilejson` describes a server to map clients.
"""
