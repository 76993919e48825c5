"""Fetch capabilities documents: aiohttp fetch, defusedxml screen, parse in the executor.

OWSLib would fetch synchronously and parse with entity expansion allowed; instead the
bytes are fetched here, screened by defusedxml (no DTD, no entities: SPEC §8) and only
then handed to a parser, off the event loop. Parsed documents are cached for a while
per server access fingerprint, URL, parameters and parser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from proxy.cache.keys import digest
from proxy.upstream.base import ServerConnection, check_status, raise_for_document
from streaming.errors import SourceBadResponse

T = TypeVar("T")


async def fetch_xml(connection: ServerConnection, url: str, params: Mapping[str, str]) -> bytes:
    """GET a capabilities document and check it is safe, well-formed XML."""
    resp = await connection.get(url, params)
    check_status(resp, connection.secrets)
    raise_for_document(resp, connection.secrets)
    await connection.ctx.run(screen_xml, resp.body)
    return resp.body


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

    The key holds the config's access fingerprint (credentials through a keyed hash), so
    two configs with other credentials never share a parse.
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
    access = connection.ctx.fingerprints.access(connection.config)
    parser = f"{parse.__module__}.{parse.__qualname__}"
    # The URL may carry a key in its query: hash it with the rest rather than keep it.
    return digest([access, parser, url, sorted(params.items())])
