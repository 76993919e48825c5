"""Which kind of server a pasted URL is, and the config it becomes.

:func:`normalize` runs before a config is validated: an ArcGIS REST URL (``export``,
``tile/{z}/{y}/{x}``, a layer, ``?f=pjson``) becomes an arcgis config and a WMS GetMap
request a wms config, whichever type the user picked; then the type's own normalizer
(:mod:`proxy.upstream.urlforms`) makes the URL canonical. Each change is a :class:`Note`
that test connection and ``POST /servers/detect`` report as a finding.
"""

from __future__ import annotations

from typing import Any, get_args
from urllib.parse import unquote, urlsplit

from proxy.net.redact import mask_url
from proxy.schemas import ServerConfig
from proxy.upstream import templates
from proxy.upstream.urlforms import (
    Normalized,
    Note,
    arcgis_form,
    normalize_arcgis,
    normalize_wms,
    normalize_xyz,
    wms_form,
)

NORMALIZERS = {"xyz": normalize_xyz, "wms": normalize_wms, "arcgis": normalize_arcgis}
# The fields each type's schema takes, read off the schemas themselves.
FIELDS: dict[str, set[str]] = {
    get_args(cls.model_fields["type"].annotation)[0]: set(cls.model_fields)
    for cls in get_args(ServerConfig)
}


def guess_type(url: str, picked: str | None = None) -> str | None:
    """The server type ``url`` is, overriding ``picked`` for ArcGIS and GetMap URLs."""
    if arcgis_form(url) is not None:
        return "arcgis"
    if picked in (None, "xyz", "wms") and wms_form(url).is_getmap:
        return "wms"
    if picked is not None:
        return picked
    lowered = unquote(url).lower()
    if "wmts" in lowered:
        return "wmts"
    if "service=wms" in lowered or "/wms" in lowered:
        return "wms"
    try:
        templates.check_tiles(url)
    except ValueError:
        return None
    return "xyz"


def normalize(raw: dict[str, Any], *, guess: bool = False) -> Normalized:
    """``raw`` as the config it stands for, and notes on what changed.

    With ``guess``, a missing ``type`` is guessed and a missing ``name`` made from the
    URL (``POST /servers/detect``, ``servers add`` without ``--type``).
    """
    url, picked = raw.get("url"), raw.get("type")
    if not isinstance(url, str) or (picked is not None and not isinstance(picked, str)):
        return raw, []
    if picked not in (None, *FIELDS):
        return raw, []
    notes: list[Note] = []
    kind = guess_type(url.strip(), picked)
    out = dict(raw)
    if kind is not None and picked is not None and kind != picked:
        out, note = switch_type(out, picked, kind)
        notes.append(note)
    elif kind is not None and picked is None and guess:
        out["type"] = kind
        notes.append(Note("type_detected", "info", f"the URL is a {kind} server"))
    if guess and not out.get("name"):
        out["name"] = default_name(url)
    normalizer = NORMALIZERS.get(str(out.get("type")))
    if normalizer is None:
        return out, notes
    try:
        out, more = normalizer(out)
    except ValueError:
        return out, notes  # validation says what is wrong
    return out, [*notes, *more]


def switch_type(raw: dict[str, Any], picked: str, kind: str) -> tuple[dict[str, Any], Note]:
    """``raw`` as a ``kind`` config; fields only ``picked`` has are dropped and named."""
    dropped = sorted(k for k in raw if k not in FIELDS[kind])
    out = {k: v for k, v in raw.items() if k in FIELDS[kind]}
    out["type"] = kind
    what = "an ArcGIS REST service" if kind == "arcgis" else "a WMS GetMap request"
    extra = f"; dropped the {picked} fields {', '.join(dropped)}" if dropped else ""
    return out, Note(
        "type_changed",
        "warning",
        f"the URL is {what}, so the server is {kind}, not {picked}{extra}",
        f"pick type {kind} for such URLs (or use POST /servers/detect)",
    )


def default_name(url: str) -> str:
    """A name for a server from its URL: the ArcGIS service name, else the host."""
    form = arcgis_form(url)
    if form is not None:
        parts = urlsplit(form.service_url).path.rstrip("/").split("/")
        return "/".join(parts[-2:]) if len(parts) >= 2 else form.service_url
    try:
        return urlsplit(mask_url(url.strip())).hostname or "server"
    except ValueError:
        return "server"
