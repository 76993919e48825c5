"""One fingerprint of a server config, for every cache keyed by what a server serves.

The fingerprint is the SHA-256 of canonical JSON (orjson, sorted keys) of every field
that changes pixels. Fields that do not (name, import resolution, preview point, limits,
cache TTL, TLS choice, quota) are left out, so editing them keeps cached data. Credentials
(header and param values, ArcGIS credentials) enter only through an HMAC with a secret
key of the installation: a key never holds a secret, and a leaked key cannot be
brute-forced back into a short password without that secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from typing import Any

import orjson

from proxy.schemas import SECRET_MAPS, ServerBase

# Fields that never change what the upstream serves.
NOT_PIXELS = frozenset(
    {
        "name",
        "resolution",
        "preview",
        "max_concurrency",
        "rate_limit",
        "cache_ttl",
        "skip_ssl",
        "quota",
    }
)
# What a metadata request (capabilities, service info) depends on: not the layer or style
# picked from it, so a layer change reuses the parsed document.
ACCESS = frozenset({"type", "url", "headers", "params", "credentials"})


class Fingerprints:
    """Fingerprints of server configs, keyed by the installation's secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def keyed(self, value: str) -> str:
        """HMAC-SHA256 of ``value``: how a credential enters a key."""
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()

    def config(self, config: ServerBase, only: Collection[str] | None = None) -> str:
        """The fingerprint of ``config``: its pixel fields, or just the fields in ``only``."""
        data = config.model_dump(mode="json", exclude=set(NOT_PIXELS))
        if only is not None:
            data = {k: v for k, v in data.items() if k in only}
        for name in SECRET_MAPS:
            if name in data:
                data[name] = {k: self.keyed(v) for k, v in data[name].items()}
        if data.get("credentials") is not None:
            data["credentials"] = self.keyed(data["credentials"])
        return digest(data)

    def access(self, config: ServerBase) -> str:
        """The fingerprint of what a metadata request of ``config`` depends on."""
        return self.config(config, ACCESS)


def digest(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data`` (sorted keys): stable across runs."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
