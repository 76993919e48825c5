"""Server configurations: the schema of each type, and the views the API returns.

:func:`proxy.upstream.registry.parse_config` picks the schema by ``type``.

Credentials (``credentials``, the values of ``headers``, ``params`` and ``keys``, and
those inside ``url``: ``user:password@`` and secret-looking query values) are
write-only: :func:`public_view` masks them and :func:`merge_config` keeps the stored value
when a client sends the mask back.

Validation normalizes: a pasted URL form (an XYZ dialect, a WMS GetMap request, an ArcGIS
export or tile URL) is stored as its canonical form (:mod:`proxy.upstream.urlforms`).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.errors import InvalidInput
from proxy.net.redact import MASK, has_mask, mask_url, unmask_url, url_secrets
from proxy.quota.model import QuotaConfig
from proxy.upstream import templates
from proxy.upstream.templates import ENCODED_BRACES as ENCODED_PLACEHOLDER
from proxy.upstream.templates import quote_invalid
from proxy.upstream.urlforms import (
    ARCGIS_FORMATS,
    normalize_arcgis,
    normalize_wms,
    normalize_xyz,
)
from streaming.grid import MAX_ZOOM

__all__ = ["ARCGIS_FORMATS", "ENCODED_PLACEHOLDER"]

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")  # what aiohttp can send
HOST_NAME = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


def check_http_url(url: str) -> str:
    """``url`` stripped and percent-encoded where invalid, if absolute http(s) with a host."""
    url = url.strip()
    # Checked before quoting: a line break is an attack, not a character to encode.
    if CONTROL_CHARS.search(url):
        raise ValueError("must not hold control characters (line breaks, tabs, NUL)")
    url = quote_invalid(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        raise ValueError("must be an absolute http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    masked = has_mask(url)
    if masked:
        raise ValueError(
            f"{masked} of the URL is masked ({MASK}) and there is no stored value to keep: "
            "send the real value"
        )
    return url


def refuse_control_chars(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` unchanged unless its URL holds control characters (checked before quoting)."""
    url = data.get("url")
    if isinstance(url, str) and CONTROL_CHARS.search(url):
        raise ValueError("url: must not hold control characters (line breaks, tabs, NUL)")
    return data


def no_placeholders(url: str, kind: str) -> str:
    """Refuse ``{...}`` left in a URL that is not a template: it would be sent literally."""
    names = templates.placeholder_names(templates.parse(url))
    if names:
        listed = ", ".join("{" + n + "}" for n in sorted(names))
        raise ValueError(f"a {kind} URL takes no placeholders; found {listed}")
    return url


class LatLon(BaseModel):
    """A point in WGS84 degrees."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lat: float = Field(ge=-85.05, le=85.05)
    lon: float = Field(ge=-180, le=180)


class ServerBase(BaseModel):
    """Fields every server type has (SPEC §2)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    url: str
    resolution: float | None = Field(default=None, gt=0, le=100_000)
    preview: LatLon | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    skip_ssl: bool = False
    max_concurrency: int = Field(default=8, ge=1, le=128)
    # Below 0.01 request/s a read could wait hours for its turn: a typo, not a setting.
    rate_limit: float | None = Field(default=None, ge=0.01, le=100_000)
    cache_ttl: int = Field(default=86_400, ge=0, le=10 * 365 * 86_400)
    # Other hosts that may receive the credentials (a token portal, a tile CDN).
    credential_hosts: list[str] = Field(default_factory=list, max_length=20)
    # A budget of upstream requests/bytes per day, month or rolling window (proxy/quota).
    quota: QuotaConfig | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return check_http_url(url)

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        # Refused here, not by the HTTP client mid-request (which would be a 500).
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError("a header name is letters, digits and !#$%&'*+-.^_`|~ only")
            if not HEADER_VALUE.fullmatch(value):
                raise ValueError("a header value is printable ASCII, without line breaks")
        return headers

    @field_validator("credential_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not HOST_NAME.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path)")
        return [h.lower() for h in hosts]

    def secrets(self) -> list[str]:
        """Every secret value of this config (for redaction), those in the URL included."""
        return [*self.headers.values(), *self.params.values(), *url_secrets(self.url)]


class XYZConfig(ServerBase):
    """An XYZ tile server: a URL template."""

    type: Literal["xyz"]
    subdomains: list[str] = Field(default_factory=list)
    min_zoom: int = Field(default=0, ge=0, le=MAX_ZOOM)
    max_zoom: int = Field(default=19, ge=0, le=MAX_ZOOM)  # past MAX_ZOOM: clamped
    tile_size: Literal[256, 512] = 256
    # The upstream is asked for level z + zoom_offset (MapProxy-style TMS levels: -1).
    zoom_offset: int = Field(default=0, ge=-MAX_ZOOM, le=MAX_ZOOM)
    # Values of key placeholders ({apikey} -> "..."): write-only, like headers.
    keys: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        return normalize_xyz(refuse_control_chars(data))[0] if isinstance(data, dict) else data

    @field_validator("url")
    @classmethod
    def _tiles(cls, url: str) -> str:
        return templates.check_tiles(url)

    def model_post_init(self, context: Any) -> None:
        """Check rules across fields: the template with the same grammar that fills it."""
        if self.min_zoom > self.max_zoom:
            raise ValueError("min_zoom is greater than max_zoom")
        templates.check(self.url, self.subdomains, self.keys)

    def secrets(self) -> list[str]:
        """Every secret value of this config, the template's keys included."""
        return [*super().secrets(), *self.keys.values()]


class WMSConfig(ServerBase):
    """A WMS: the GetCapabilities URL, and the layer(s) to request."""

    type: Literal["wms"]
    layers: list[str] = Field(default_factory=list)  # empty: the first named layer
    styles: list[str] = Field(default_factory=list)
    format: str | None = None  # default: PNG or JPEG, whichever the server offers
    crs: str | None = None  # default: EPSG:3857 if offered, else the first offered
    version: Literal["1.1.1", "1.3.0"] | None = None  # default: what the server answers

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        return normalize_wms(refuse_control_chars(data))[0] if isinstance(data, dict) else data

    @field_validator("url")
    @classmethod
    def _no_placeholders(cls, url: str) -> str:
        return no_placeholders(url, "WMS")


class WMTSConfig(ServerBase):
    """A WMTS: the GetCapabilities URL, a layer and one of its tile matrix sets."""

    type: Literal["wmts"]
    layer: str | None = None  # default: the first layer
    tile_matrix_set: str | None = None  # default: GoogleMapsCompatible-like, else the first
    style: str | None = None
    format: str | None = None
    # Matrix indices of the chosen set, coarse to fine from 0; default: all or the limits.
    min_zoom: int | None = Field(default=None, ge=0)
    max_zoom: int | None = Field(default=None, ge=0)

    def model_post_init(self, context: Any) -> None:
        """Check rules across fields."""
        lo, hi = self.min_zoom, self.max_zoom
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_zoom is greater than max_zoom")


class ArcGISConfig(ServerBase):
    """An ArcGIS MapServer or ImageServer, with optional ``username:password``."""

    type: Literal["arcgis"]
    credentials: str | None = None
    # export/exportImage format; default png32 (MapServer) or png (ImageServer)
    format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        return normalize_arcgis(refuse_control_chars(data))[0] if isinstance(data, dict) else data

    @field_validator("url")
    @classmethod
    def _service_url(cls, url: str) -> str:
        if not url.endswith(("/MapServer", "/ImageServer")):
            raise ValueError("must end with /MapServer or /ImageServer")
        return no_placeholders(url, "ArcGIS")

    @field_validator("credentials")
    @classmethod
    def _user_password(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":")):
            raise ValueError("must be username:password")
        if value is not None and value.endswith(":" + MASK):
            raise ValueError(f"the password is masked ({MASK}) and none is stored: send it")
        return value

    @field_validator("format")
    @classmethod
    def _export_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if value not in ARCGIS_FORMATS:
            raise ValueError(f"must be one of {', '.join(ARCGIS_FORMATS)}")
        return value

    def model_post_init(self, context: Any) -> None:
        """Check rules across fields."""
        if self.format == "jpgpng" and self.url.endswith("/MapServer"):
            raise ValueError("format jpgpng is for an ImageServer; a MapServer takes png32 or jpg")

    def secrets(self) -> list[str]:
        """Every secret value of this config, the password included."""
        extra = self.credentials.split(":", 1) if self.credentials else []
        return [*super().secrets(), *extra[1:], *([self.credentials] if self.credentials else [])]


# The static type of a parsed config; which types exist, and how each is parsed, opened
# and described, is the table of :mod:`proxy.upstream.registry`.
ServerConfig = XYZConfig | WMSConfig | WMTSConfig | ArcGISConfig

SECRET_MAPS = ("headers", "params", "keys")


def stored_dict(config: ServerConfig) -> dict[str, Any]:
    """The full config, secrets included, as the catalog stores it."""
    return config.model_dump(mode="json", exclude_none=True)


def public_view(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config as the API returns it: every secret value masked."""
    view = dict(stored)
    if isinstance(view.get("url"), str):
        view["url"] = mask_url(view["url"])
    for key in SECRET_MAPS:
        if view.get(key):
            view[key] = dict.fromkeys(view[key], MASK)
    if view.get("credentials"):
        username = str(view["credentials"]).split(":", 1)[0]
        view["credentials"] = f"{username}:{MASK}"
    return view


def merge_config(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` onto a stored config; masked values sent back keep the stored secret."""
    check_secrets_follow_host(stored, changes)
    merged = {**stored, **changes}
    for key in SECRET_MAPS:
        if isinstance(changes.get(key), dict):
            old = stored.get(key) or {}
            merged[key] = {k: old.get(k, v) if v == MASK else v for k, v in changes[key].items()}
    creds, old_creds = changes.get("credentials"), stored.get("credentials")
    if isinstance(creds, str) and creds.endswith(":" + MASK) and isinstance(old_creds, str):
        # user:*** keeps the stored password and applies the (possibly new) user name
        merged["credentials"] = creds[: -len(MASK)] + old_creds.split(":", 1)[1]
    if isinstance(changes.get("url"), str) and isinstance(stored.get("url"), str):
        merged["url"] = unmask_url(changes["url"], stored["url"])
    return {k: v for k, v in merged.items() if v is not None}


def check_secrets_follow_host(stored: dict[str, Any], changes: dict[str, Any]) -> None:
    """Refuse an edit that moves a config to another host with its stored secrets unsent.

    Stored credentials were given for one host; moving the URL elsewhere must not hand
    them to the new host silently. The edit re-sends them in clear (or drops them).
    """
    url = changes.get("url")
    if not isinstance(url, str):
        return
    old, new = _hostname(str(stored.get("url", ""))), _hostname(url)
    trusted = {old, *changes.get("credential_hosts", stored.get("credential_hosts", []))}
    if new is None or new in {str(h).lower() for h in trusted if h}:
        return
    unsent = [
        key
        for key in SECRET_MAPS
        if stored.get(key)
        and (not isinstance(changes.get(key), dict) or MASK in changes[key].values())
    ]
    creds = changes.get("credentials", MASK)
    if stored.get("credentials") and isinstance(creds, str) and creds.endswith(MASK):
        unsent.append("credentials")
    if unsent:
        raise InvalidInput(
            f"the URL moves to another host ({new}): send {', '.join(unsent)} again in clear, "
            "or empty to drop them",
            hint="stored credentials are never sent to a new host without being re-sent",
            fields=unsent,
        )


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None
