"""Signed, expiring tile tokens for map clients, which cannot send an API-key header.

A token names one scope and an expiry and is signed with the installation's secret
(HMAC-SHA256, truncated to 128 bits): ``<scope>.<expiry, epoch s>.<signature>``, all
URL-safe. The scope is a server id (that server's tile and TileJSON routes) or
``image:<id>`` (:func:`image_scope`: one streaming image's tiles and TileJSON), so the
API key never appears in a URL. Verified tokens are remembered for a moment: an HMAC costs ~3 µs, a
dictionary lookup ~0.5 µs, and map clients send the same token with every tile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from cachetools import TTLCache

from proxy.errors import Unauthorized

MAX_TTL = 30 * 86_400  # a month: long enough for a map embed, short enough to matter
TOKEN_SHAPE = re.compile(r"^(image:)?[A-Za-z0-9_-]{1,64}\.[0-9]{1,12}\.[A-Za-z0-9_-]{22}$")
IMAGE_SCOPE = "image:"  # no server id has a colon: an image token never opens a server


def image_scope(image_id: str) -> str:
    """The token scope of one streaming image."""
    return IMAGE_SCOPE + image_id


class TileTokens:
    """Mints and verifies tile tokens with one secret."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock
        # token -> expiry, for tokens already verified; bounded so a flood of forgeries
        # (never stored: they fail the HMAC) or of real tokens cannot grow it.
        self._verified: TTLCache[str, int] = TTLCache(maxsize=4096, ttl=60)

    def mint(self, server_id: str, ttl: float) -> tuple[str, int]:
        """A token for ``server_id`` valid for ``ttl`` seconds, and its expiry (epoch s)."""
        expires = int(self._clock() + ttl)
        payload = f"{server_id}.{expires}"
        return f"{payload}.{self._sign(payload)}", expires

    def verify(self, token: str, server_id: str) -> None:
        """Raise :class:`Unauthorized` unless ``token`` is valid now for ``server_id``."""
        expires = self._verified.get(token)
        if expires is None:
            expires = self._check_signature(token)
            self._verified[token] = expires
        if expires < self._clock():
            raise Unauthorized(
                "the tile token has expired", hint="mint a new one: POST /servers/{id}/tile-tokens"
            )
        if not token.startswith(server_id + "."):
            raise Unauthorized(
                "the tile token is for another server or image",
                hint="each server's (or image's) tiles need a token minted for it",
            )

    def _check_signature(self, token: str) -> int:
        if not TOKEN_SHAPE.match(token):
            raise Unauthorized("the tile token is malformed", hint=_MINT_HINT)
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise Unauthorized("the tile token is not valid", hint=_MINT_HINT)
        return int(payload.rsplit(".", 1)[1])

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


_MINT_HINT = "mint one with POST /servers/{id}/tile-tokens and pass it as ?token="
