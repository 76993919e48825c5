"""Fetch capabilities documents: aiohttp fetch, defusedxml screen, parse in the executor.

OWSLib would fetch synchronously and parse with entity expansion allowed; instead the
bytes are fetched here, screened by defusedxml (no DTD, no entities: SPEC §8) and only
then handed to a parser, off the event loop. Parsed documents are cached for a while
per URL and parameters.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from proxy.upstream.base import ServerConnection, check_status, raise_for_document
from streaming.errors import SourceBadResponse

T = TypeVar("T")
# Longest first: a UTF-32 LE BOM starts like a UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
DECLARED_ENCODING = re.compile(r"""^(<\?xml[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")


async def fetch_xml(connection: ServerConnection, url: str, params: Mapping[str, str]) -> bytes:
    """GET a capabilities document and check it is safe, well-formed XML."""
    resp = await connection.get(url, params)
    check_status(resp, connection.secrets)
    body = decode_bom(resp.body)
    raise_for_document(resp, connection.secrets)
    await connection.ctx.run(screen_xml, body)
    return body


def decode_bom(body: bytes) -> bytes:
    """A document that starts with a byte-order mark, as UTF-8 without one.

    The BOM decides the encoding (XML 1.0 §4.3.3); a declaration that says otherwise
    (servers re-encode to UTF-16 and keep ``encoding="UTF-8"``) is dropped.
    """
    for bom, codec in BOMS:
        if body.startswith(bom):
            try:
                text = body[len(bom) :].decode(codec)
            except UnicodeDecodeError:
                return body  # not what the BOM says: let the parser refuse it
            return DECLARED_ENCODING.sub(r"\1", text, count=1).encode("utf-8")
    return body


def screen_xml(body: bytes) -> None:
    """Refuse XML with entities (XXE, billion laughs) and XML that does not parse.

    A bare DOCTYPE passes (WMS 1.1.1 servers always send one, and expat never fetches
    it); entity declarations and external references are refused.
    """
    try:
        ElementTree.fromstring(body, forbid_dtd=False)
    except DefusedXmlException as exc:
        raise SourceBadResponse(
            "the capabilities document declares a DTD or entities, refused for safety"
        ) from exc
    except ElementTree.ParseError as exc:
        raise SourceBadResponse(
            f"the capabilities document is not well-formed XML: {exc}",
            hint="check that the URL is the GetCapabilities URL of the service",
        ) from exc


async def cached_capabilities(
    connection: ServerConnection,
    url: str,
    params: Mapping[str, str],
    parse: Callable[[bytes], T],
) -> T:
    """Fetch, screen and ``parse`` (in the executor) a capabilities document, with a TTL cache.

    The cache key holds the URL and query, plus the header names and a hash of the header
    values, so two configs with other credentials never share a parse.
    """
    ctx = connection.ctx
    key = _cache_key(connection, url, params, parse)
    cached: Any = ctx.capabilities.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    body = await fetch_xml(connection, url, params)
    try:
        parsed: T = await ctx.run(parse, body)
    except SourceBadResponse:
        raise
    except Exception as exc:  # OWSLib raises bare KeyError/AttributeError on odd documents
        raise SourceBadResponse(
            f"the capabilities document could not be read: {type(exc).__name__}: {exc}",
            hint="check that the URL is the GetCapabilities URL of the service",
        ) from exc
    ctx.capabilities[key] = parsed
    return parsed


def _cache_key(
    connection: ServerConnection, url: str, params: Mapping[str, str], parse: Callable[..., Any]
) -> str:
    config = connection.config
    secret = repr(sorted(config.headers.items()) + sorted(config.params.items()))
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return f"{parse.__module__}.{parse.__qualname__}|{url}|{sorted(params.items())}|{digest}"
