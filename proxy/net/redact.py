"""Remove secrets from URLs and texts before they reach a log, a diagnostic or an error.

A URL can carry credentials itself: a ``user:password@`` part and query parameters such
as ``access_token`` or ``key``. :func:`url_secrets` lists them (so every log and error
masks them), :func:`mask_url` hides them in views, and :func:`unmask_url` puts the stored
values back when a client sends a masked URL back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry secrets by convention, whatever the server config says.
SECRET_PARAM = re.compile(
    r"(token|key|apikey|api_key|access_token|password|passwd|secret|signature|sig|auth)$", re.I
)


def _pieces(query: str) -> list[tuple[str, str, str]]:
    """``(key, decoded value, raw value)`` of each ``&``-separated piece, in order."""
    out = []
    for raw in query.split("&"):
        key, eq, value = raw.partition("=")
        out.append((unquote_plus(key), unquote_plus(value) if eq else "", value if eq else ""))
    return out


def _is_secret(key: str) -> bool:
    return bool(key) and SECRET_PARAM.search(key) is not None


def _mask_query(query: str) -> str:
    """``query`` with the values of secret-looking keys masked, every other byte kept."""
    if not query:
        return query
    pieces = []
    for raw in query.split("&"):
        key, eq, value = raw.partition("=")
        pieces.append(f"{key}={MASK}" if eq and value and _is_secret(unquote_plus(key)) else raw)
    return "&".join(pieces)


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` with userinfo, secret-looking query values and every known secret masked.

    The rest of the URL is shown byte for byte: diagnostics show what was sent.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    masked = parts._replace(netloc=netloc, query=_mask_query(parts.query))
    return redact_text(urlunsplit(masked), secrets)


def url_secrets(url: str) -> list[str]:
    """The credentials inside ``url``: its password and the values of secret-looking params."""
    parts = urlsplit(url)
    found = [unquote(parts.password)] if parts.password else []
    for key, value, raw in _pieces(parts.query):
        if _is_secret(key) and value and value != MASK:
            found.extend({value, raw})
    return found


def mask_url(url: str) -> str:
    """``url`` as views show it: ``user:***@`` and secret query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=_mask_query(parts.query)))


def unmask_url(url: str, stored: str) -> str:
    """``url`` with masked credentials replaced by those of ``stored``, on the same host only.

    Values with no stored counterpart stay masked (validation then refuses them): a
    secret is never carried to another host without being sent again.
    """
    new, old = urlsplit(url), urlsplit(stored)
    host = _host(url)
    if MASK not in url or host is None or host != _host(stored):
        return url
    netloc = new.netloc
    if new.password == MASK and old.password:
        userinfo, address = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{old.password}@{address}"
    olds: dict[str, str] = {}
    for key, _value, raw in _pieces(old.query):
        olds.setdefault(key, raw)
    pieces = []
    for raw in new.query.split("&") if new.query else []:
        key, eq, value = raw.partition("=")
        name = unquote_plus(key)
        keep = eq and unquote_plus(value) == MASK and name in olds and olds[name] != MASK
        pieces.append(f"{key}={olds[name]}" if keep else raw)
    return urlunsplit(new._replace(netloc=netloc, query="&".join(pieces)))


def _host(url: str) -> tuple[str | None, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:  # a port that is no number: no host to compare
        return None


def has_mask(url: str) -> str | None:
    """The name of a credential of ``url`` still masked (``***``), else ``None``."""
    parts = urlsplit(url)
    if parts.password == MASK:
        return "the password"
    for key, value, _raw in _pieces(parts.query):
        if value == MASK:
            return f"the query parameter {key!r}"
    return None


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every occurrence of each secret (and its URL-encoded form) masked."""
    # Very short secrets would mask unrelated text; they are masked by name instead.
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    return text
