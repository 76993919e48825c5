"""API-key checks, shared by the auth middleware and the routes that authenticate inline.

Tile and TileJSON routes skip the middlewares (the hit path measures each frame: see
``/work/shared/notes``): they are marked with :func:`inline_auth` and check the key or a
tile token themselves, answering errors in the SPEC §7 shape themselves too.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import TypeVar

from aiohttp import web

from proxy.errors import Unauthorized

F = TypeVar("F")
INLINE = "_inline_auth"


def inline_auth(handler: F) -> F:
    """Mark a handler that authenticates and renders its errors itself."""
    setattr(handler, INLINE, True)
    return handler


def is_inline(handler: object) -> bool:
    """Whether ``handler`` (or the handler it wraps) authenticates itself."""
    return getattr(handler, INLINE, False) is True


def given_key(request: web.Request) -> str | None:
    """The API key of the request: ``X-API-Key`` or ``Authorization: Bearer``."""
    key = request.headers.get("X-API-Key")
    if key is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    return key


def valid_key(key: str | None, keys: Collection[str]) -> bool:
    """Whether ``key`` is one of ``keys``, compared in constant time; blank never is."""
    # Bytes, because compare_digest refuses non-ASCII str (a header may hold any octet);
    # against every key in constant time, so timing tells nothing about a key.
    given = key.strip().encode("utf-8", "surrogateescape") if key else b""
    return bool(given) and any(hmac.compare_digest(given, k.encode()) for k in keys if k)


def require_key(request: web.Request, keys: Collection[str]) -> None:
    """Raise :class:`Unauthorized` unless the request carries a valid API key."""
    if not valid_key(given_key(request), keys):
        raise Unauthorized(
            "a valid API key is required",
            hint="send it in the X-API-Key header or as Authorization: Bearer <key>",
        )
