"""JSON in and out (orjson), and small request-parsing helpers for handlers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy.errors import BadRequest, InvalidInput

MAX_JSON_BYTES = 1 << 20


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response serialized by orjson."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The request body as JSON; :class:`BadRequest` when it is not JSON."""
    if request.content_length and request.content_length > MAX_JSON_BYTES:
        raise BadRequest("the request body is too large")
    body = await request.read()
    if not body:
        if required:
            raise BadRequest("the request needs a JSON body")
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def json_object(data: Any, what: str = "the request body") -> dict[str, Any]:
    """``data`` if it is a JSON object, else :class:`InvalidInput`."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return data
