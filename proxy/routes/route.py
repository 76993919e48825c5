"""One route of the API: where, what handles it, what it reads and answers (for OpenAPI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp.typedefs import Handler

UPSTREAM_ERRORS = (403, 409, 502, 503, 504)  # routes that reach an upstream
PNG_QUERY = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "answer the preview as a raw image instead of JSON (auto: JPEG when "
    "opaque, PNG with transparency); without it, an image type in Accept does the same",
    "schema": {"type": "string", "enum": ["json", "auto", "png", "jpeg", "webp"]},
}

TOKEN_QUERY = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a tile token of this server (POST /servers/{id}/tile-tokens), for "
    "map clients that cannot send the X-API-Key header",
    "schema": {"type": "string"},
}
TILE_MEDIA = ("image/jpeg", "image/webp", "image/gif", "image/tiff")


def query_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter, as an OpenAPI parameter object."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


@attrs.frozen(kw_only=True)
class Route:
    """One route: where, what handles it, and what it reads and answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: Any = None  # the model of the JSON request body (None: no body)
    body_required: bool = True
    ok: int = 200  # the success status
    other_ok: tuple[tuple[int, Any], ...] = ()  # other success statuses and their JSON models
    answer: Any = None  # the model of the success answer (a str: a media type; None: empty)
    also: tuple[str, ...] = ()  # other media types of the success answer
    errors: tuple[int, ...] = ()  # error statuses beyond those the route's shape implies
    public: bool = False  # no API key needed
    query: tuple[Mapping[str, Any], ...] = ()  # OpenAPI parameter objects
