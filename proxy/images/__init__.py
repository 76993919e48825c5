"""Imports and streaming images (SPEC §4, §5): the service side of ``streaming.image``.

``ask`` parses reads, ``store`` turns catalog records into views and grids, ``formats``
encodes pixels, ``gdal_xml`` and ``tilejson`` describe an image for GDAL and map
clients; ``plan`` and ``service`` drive the library (imported only by those two).
"""
