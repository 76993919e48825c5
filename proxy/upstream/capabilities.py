"""Fetch capabilities documents: aiohttp fetch, defusedxml screen, parse in the executor.

OWSLib would fetch synchronously and parse with entity expansion allowed; instead the
bytes are fetched here, screened by defusedxml (no DTD, no entities: SPEC §8) and only
then handed to a parser, off the event loop. Parsed documents are cached for a while
per server access fingerprint, URL, parameters and parser.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from proxy.cache.keys import digest
from proxy.upstream.base import (
    CachedDocument,
    ServerConnection,
    check_status,
    raise_for_document,
)
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
    """GET a capabilities document and check it is safe, well-formed XML of bounded size."""
    limits = connection.ctx.capabilities_limits
    resp = await connection.get(url, params, max_bytes=limits.max_bytes)
    check_status(resp, connection.secrets)
    body = decode_bom(resp.body)
    raise_for_document(resp, connection.secrets)
    await _bounded(connection, partial(screen_xml, max_layers=limits.max_layers), body)
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


def screen_xml(body: bytes, max_layers: int | None = None) -> None:
    """Refuse XML with entities (XXE, billion laughs), XML that does not parse, and
    documents with more than ``max_layers`` layers.

    A bare DOCTYPE passes (WMS 1.1.1 servers always send one, and expat never fetches
    it); entity declarations and external references are refused.
    """
    try:
        root = ElementTree.fromstring(body, forbid_dtd=False)
    except DefusedXmlException as exc:
        raise SourceBadResponse(
            "the capabilities document declares a DTD or entities, refused for safety"
        ) from exc
    except ElementTree.ParseError as exc:
        raise SourceBadResponse(
            f"the capabilities document is not well-formed XML: {exc}",
            hint="check that the URL is the GetCapabilities URL of the service",
        ) from exc
    if max_layers is not None:
        layers = sum(1 for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Layer")
        if layers > max_layers:
            raise SourceBadResponse(
                f"the capabilities document lists {layers} layers, past the limit of {max_layers}",
                hint="raise the capabilities_max_layers setting if this server is trusted",
            )


async def _bounded(connection: ServerConnection, func: Callable[[bytes], T], body: bytes) -> T:
    """``func(body)`` in the executor, given up after the parse timeout.

    The worker thread cannot be stopped and finishes on its own; the request does not
    wait for it, and the event loop (``/health``) never did.
    """
    timeout = connection.ctx.capabilities_limits.parse_timeout
    try:
        result: T = await asyncio.wait_for(connection.ctx.run(func, body), timeout)
    except TimeoutError:
        raise SourceBadResponse(
            f"the capabilities document ({len(body)} bytes) took more than {timeout:g} s to read",
            hint="the document is too large or complex; raise capabilities_parse_timeout "
            "if this server is trusted",
        ) from None
    return result


async def cached_capabilities(
    connection: ServerConnection,
    url: str,
    params: Mapping[str, str],
    parse: Callable[[bytes], T],
) -> T:
    """Fetch, screen and ``parse`` (in the executor) a capabilities document, with a TTL cache.

    The key holds the config's access fingerprint (credentials through a keyed hash), so
    two configs with other credentials never share a parse.
    """
    ctx = connection.ctx
    key = _cache_key(connection, url, params, parse)
    cached = ctx.capabilities.get(key)
    if cached is not None:
        return cached.value  # type: ignore[no-any-return]
    body = await fetch_xml(connection, url, params)
    try:
        parsed: T = await _bounded(connection, parse, body)
    except SourceBadResponse:
        raise
    except Exception as exc:  # OWSLib raises bare KeyError/AttributeError on odd documents
        raise SourceBadResponse(
            f"the capabilities document could not be read: {type(exc).__name__}: {exc}",
            hint="check that the URL is the GetCapabilities URL of the service",
        ) from exc
    # Weighed by the document's bytes (the parsed form is roughly proportional); a
    # document larger than the whole cache is used once and not kept.
    if len(body) <= ctx.capabilities.maxsize:
        ctx.capabilities[key] = CachedDocument(parsed, len(body))
    return parsed


def _cache_key(
    connection: ServerConnection, url: str, params: Mapping[str, str], parse: Callable[..., Any]
) -> str:
    access = connection.ctx.fingerprints.access(connection.config)
    parser = f"{parse.__module__}.{parse.__qualname__}"
    # The URL may carry a key in its query: hash it with the rest rather than keep it.
    return digest([access, parser, url, sorted(params.items())])
