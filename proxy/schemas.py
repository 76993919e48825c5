"""Server configurations: the schema of each type, and the views the API returns.

:func:`proxy.upstream.registry.parse_config` picks the schema by ``type``.

Credentials (``credentials``, the values of ``headers`` and ``params``) are write-only:
:func:`public_view` masks them and :func:`merge_config` keeps the stored value when a
client sends the mask back.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.net.redact import MASK
from streaming.grid import MAX_ZOOM

ENCODED_PLACEHOLDER = re.compile(r"%7B(-?[a-z]+)%7D", re.I)
XYZ_PLACEHOLDER = re.compile(r"\{(-?[a-z]+)\}")
XYZ_KNOWN = {"x", "y", "-y", "z", "s", "q"}
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")


def decode_placeholders(url: str) -> str:
    """``url`` with URL-encoded placeholders (``%7Bz%7D``) turned back into ``{z}``."""
    return ENCODED_PLACEHOLDER.sub(lambda m: "{" + m.group(1).lower() + "}", url)


def check_http_url(url: str) -> str:
    """Return ``url`` stripped if it is an absolute http(s) URL with a host, else raise."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


class LatLon(BaseModel):
    """A point in WGS84 degrees."""

    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-85.05, le=85.05)
    lon: float = Field(ge=-180, le=180)


class ServerBase(BaseModel):
    """Fields every server type has (SPEC §2)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    url: str
    resolution: float | None = Field(default=None, gt=0, le=100_000)
    preview: LatLon | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    skip_ssl: bool = False
    max_concurrency: int = Field(default=8, ge=1, le=128)
    rate_limit: float | None = Field(default=None, gt=0)
    cache_ttl: int = Field(default=86_400, ge=0)

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

    def secrets(self) -> list[str]:
        """Every secret value of this config (for redaction)."""
        return [*self.headers.values(), *self.params.values()]


class XYZConfig(ServerBase):
    """An XYZ tile server: a URL template."""

    type: Literal["xyz"]
    subdomains: list[str] = Field(default_factory=list)
    min_zoom: int = Field(default=0, ge=0, le=MAX_ZOOM)
    max_zoom: int = Field(default=19, ge=0, le=MAX_ZOOM)
    tile_size: Literal[256, 512] = 256

    @field_validator("url")
    @classmethod
    def _template(cls, url: str) -> str:
        url = decode_placeholders(url)
        names = set(XYZ_PLACEHOLDER.findall(url))
        unknown = names - XYZ_KNOWN
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{z}} {{x}} {{y}}")
        if "q" not in names and not ({"z", "x"} <= names and names & {"y", "-y"}):
            raise ValueError("the template needs {z}, {x} and {y} (or {-y}), or {q}")
        return url

    def model_post_init(self, context: Any) -> None:
        """Check rules across fields."""
        if self.min_zoom > self.max_zoom:
            raise ValueError("min_zoom is greater than max_zoom")
        if "{s}" in self.url and not self.subdomains:
            raise ValueError("the template has {s}: give the subdomains list")


class WMSConfig(ServerBase):
    """A WMS: the GetCapabilities URL, and the layer(s) to request."""

    type: Literal["wms"]
    layers: list[str] = Field(default_factory=list)  # empty: the first named layer
    styles: list[str] = Field(default_factory=list)
    format: str | None = None  # default: PNG or JPEG, whichever the server offers
    crs: str | None = None  # default: EPSG:3857 if offered, else the first offered
    version: Literal["1.1.1", "1.3.0"] | None = None  # default: what the server answers


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


# Image formats of export/exportImage that decode to imagery (not LERC, TIFF values, PDF).
ARCGIS_FORMATS = ("png", "png8", "png24", "png32", "jpg", "jpgpng")


class ArcGISConfig(ServerBase):
    """An ArcGIS MapServer or ImageServer, with optional ``username:password``."""

    type: Literal["arcgis"]
    credentials: str | None = None
    # export/exportImage format; default png32 (MapServer) or png (ImageServer)
    format: str | None = None

    @field_validator("url")
    @classmethod
    def _service_url(cls, url: str) -> str:
        url = url.split("?", 1)[0].rstrip("/")
        if not url.endswith(("/MapServer", "/ImageServer")):
            raise ValueError("must end with /MapServer or /ImageServer")
        return url

    @field_validator("credentials")
    @classmethod
    def _user_password(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":")):
            raise ValueError("must be username:password")
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

SECRET_MAPS = ("headers", "params")


def stored_dict(config: ServerConfig) -> dict[str, Any]:
    """The full config, secrets included, as the catalog stores it."""
    return config.model_dump(mode="json", exclude_none=True)


def public_view(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config as the API returns it: every secret value masked."""
    view = dict(stored)
    for key in SECRET_MAPS:
        if view.get(key):
            view[key] = dict.fromkeys(view[key], MASK)
    if view.get("credentials"):
        username = str(view["credentials"]).split(":", 1)[0]
        view["credentials"] = f"{username}:{MASK}"
    return view


def merge_config(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` onto a stored config; masked values sent back keep the stored secret."""
    merged = {**stored, **changes}
    for key in SECRET_MAPS:
        if isinstance(changes.get(key), dict):
            old = stored.get(key) or {}
            merged[key] = {k: old.get(k, v) if v == MASK else v for k, v in changes[key].items()}
    creds = changes.get("credentials")
    if isinstance(creds, str) and creds.endswith(":" + MASK):
        merged["credentials"] = stored.get("credentials")
    return {k: v for k, v in merged.items() if v is not None}
