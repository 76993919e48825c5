"""The one grammar of XYZ URL templates: parsed once, used to validate and to substitute.

Users paste templates from JOSM/iD (``{zoom}``, ``{switch:a,b,c}``, ``{-y}``), Leaflet
(``{s}``, ``{r}``, ``{apikey}``), Bing (``{quadkey}``) and QGIS. :func:`parse` reads every
``{...}`` group, in any case, URL-encoded or not; :func:`canonical` writes the stored
form (``{z}``, ``{s}`` plus a ``subdomains`` list, ...); :func:`fill` substitutes a tile.
Validation and substitution both walk the same tokens, so a placeholder that validates
can never reach an upstream literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import quote, unquote

import attrs

from streaming.types import TileIndex

Kind = Literal["text", "z", "x", "y", "-y", "s", "q", "r", "switch", "key", "option"]
BRACES = re.compile(r"\{([^{}]*)\}")
ENCODED_BRACES = re.compile(r"%7B(.*?)%7D", re.I)
ZOOM = re.compile(r"z(?:oom)?(?:([+-])(\d{1,2}))?")
SIMPLE: dict[str, Kind] = {
    "x": "x",
    "y": "y",
    "-y": "-y",
    "s": "s",
    "q": "q",
    "quadkey": "q",
    "r": "r",
}
# Names whose value is a credential: {apikey} {apiKey} {api_key} {accessToken} {key} ...
KEY_NAME = re.compile(r"(key|token|secret|signature|password)$")
# Characters a URL may hold as they are (RFC 3986 unreserved, reserved, and '%').
URL_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@attrs.frozen
class Token:
    """A run of literal text, or one placeholder."""

    kind: Kind
    text: str  # the literal text; the lower-case name of a key/option placeholder
    offset: int = 0  # {zoom+1}: added to z
    choices: tuple[str, ...] = ()  # {switch:a,b,c}


def quote_invalid(text: str) -> str:
    """``text`` with characters invalid in a URL percent-encoded, existing escapes kept.

    Idempotent: a ``%20`` stays ``%20`` (encoded once), a space or ``é`` is encoded, a
    ``%`` that starts no escape becomes ``%25``.
    """
    return quote(PERCENT.sub("%25", text), safe=URL_SAFE + "{}")


def decode_braces(url: str) -> str:
    """``url`` with URL-encoded placeholders (``%7Bz%7D``) turned back into ``{z}``."""
    return ENCODED_BRACES.sub(lambda m: "{" + unquote(m.group(1)) + "}", url)


def parse(template: str) -> tuple[Token, ...]:
    """The tokens of ``template`` (encoded braces are decoded first)."""
    template = decode_braces(template)
    tokens: list[Token] = []
    pos = 0
    for match in BRACES.finditer(template):
        if match.start() > pos:
            tokens.append(Token("text", template[pos : match.start()]))
        tokens.append(placeholder(match.group(1)))
        pos = match.end()
    if pos < len(template):
        tokens.append(Token("text", template[pos:]))
    return tuple(tokens)


def placeholder(raw: str) -> Token:
    """The token of one ``{...}`` group, its name matched case-insensitively."""
    name = raw.strip().lower()
    if name in SIMPLE:
        return Token(SIMPLE[name], SIMPLE[name])
    zoom = ZOOM.fullmatch(name)
    if zoom:
        sign, digits = zoom.groups()
        return Token("z", "z", int(sign + digits) if sign else 0)
    if name.startswith("switch:"):
        choices = tuple(c.strip() for c in raw.split(":", 1)[1].split(",") if c.strip())
        return Token("switch", name, choices=choices)
    return Token("key" if KEY_NAME.search(name) else "option", name)


@attrs.frozen
class Canonical:
    """The stored form of a template, and what normalizing it moved into other fields."""

    url: str
    subdomains: tuple[str, ...] | None  # from {switch:...}; None: none inline
    zoom_offset: int  # from {zoom+N}


def canonical(template: str) -> Canonical:
    """The stored template: {z} {x} {y} {-y} {s} {q} {r}, other names in lower case."""
    parts: list[str] = []
    subdomains: tuple[str, ...] | None = None
    offsets = set()
    for token in parse(template):
        if token.kind == "text":
            parts.append(quote_invalid(token.text))
        elif token.kind == "switch":
            subdomains = token.choices
            parts.append("{s}")
        else:
            if token.kind == "z":
                offsets.add(token.offset)
            parts.append("{" + token.text + "}")
    if len(offsets) > 1:
        raise ValueError("the template has {zoom} with different offsets")
    return Canonical("".join(parts), subdomains, offsets.pop() if offsets else 0)


def placeholder_names(tokens: Sequence[Token]) -> set[str]:
    """The names of the placeholders in ``tokens`` (``z``, ``x``, ``apikey``, ...)."""
    return {t.text for t in tokens if t.kind != "text"}


def check_tiles(template: str) -> str:
    """Return ``template`` if it names a tile ({z} {x} {y}, or {q}); else :class:`ValueError`."""
    kinds = {t.kind for t in parse(template)}
    if "q" not in kinds and not ({"z", "x"} <= kinds and kinds & {"y", "-y"}):
        raise ValueError("the template needs {z}, {x} and {y} (or {-y}), or {q}")
    return template


def check(template: str, subdomains: Sequence[str], values: Mapping[str, str]) -> None:
    """Raise :class:`ValueError` when ``template`` could not be filled for every tile.

    ``values`` maps key and option placeholders (``apikey``) to their values.
    """
    check_tiles(template)
    tokens = parse(template)
    kinds = {t.kind for t in tokens}
    keys = sorted({t.text for t in tokens if t.kind == "key"} - set(values))
    if keys:
        listed = ", ".join("{" + k + "}" for k in keys)
        raise ValueError(
            f"the template has the key placeholder(s) {listed} with no value: put the "
            f'value in the config\'s keys, e.g. "keys": {{"{keys[0]}": "..."}} '
            "(write-only, masked like other credentials)"
        )
    options = sorted({t.text for t in tokens if t.kind == "option"} - set(values))
    if options:
        listed = ", ".join("{" + o + "}" for o in options)
        raise ValueError(
            f"the template has the placeholder(s) {listed} with no value (options of a "
            "Leaflet provider, such as {variant} or {ext}): write their values into the "
            "URL, e.g. .../{z}/{x}/{y}.png for {ext}"
        )
    unused = sorted(set(values) - placeholder_names(tokens))
    if unused:
        raise ValueError(f"keys {unused} name no placeholder of the template")
    if "s" in kinds and not subdomains:
        raise ValueError("the template has {s}: give the subdomains list")


def quadkey(tile: TileIndex) -> str:
    """The Bing quadkey of a tile."""
    digits = []
    for level in range(tile.z, 0, -1):
        mask = 1 << (level - 1)
        digits.append(str((1 if tile.x & mask else 0) + (2 if tile.y & mask else 0)))
    return "".join(digits)


def fill(
    tokens: Sequence[Token],
    tile: TileIndex,
    *,
    subdomain: str = "",
    zoom_offset: int = 0,
    tile_size: int = 256,
    values: Mapping[str, str] | None = None,
) -> str:
    """The URL of ``tile``: each placeholder substituted, values percent-encoded.

    ``zoom_offset`` shifts only the level number the upstream sees (MapProxy-style TMS
    levels ``z-1``); columns, rows and quadkeys stay those of ``tile``.
    """
    values = values or {}
    out = []
    for token in tokens:
        kind = token.kind
        if kind == "text":
            out.append(token.text)
        elif kind == "z":
            out.append(str(tile.z + zoom_offset + token.offset))
        elif kind == "x":
            out.append(str(tile.x))
        elif kind == "y":
            out.append(str(tile.y))
        elif kind == "-y":
            out.append(str((1 << tile.z) - 1 - tile.y))
        elif kind == "q":
            out.append(quadkey(tile))
        elif kind == "r":
            out.append("@2x" if tile_size == 512 else "")
        elif kind in ("s", "switch"):
            out.append(quote(subdomain, safe=""))
        else:
            out.append(quote(values[token.text], safe="-._~"))
    return "".join(out)
