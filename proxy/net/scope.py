"""Credentials go only to the hosts a server's config names (SPEC §8).

Browsers and ``requests`` drop ``Authorization`` on a redirect to another host; here the
same holds for every credential of a config: its headers, its query parameters, its
password, and any token header. A redirect, a WMS OnlineResource or a WMTS ResourceURL
on another host gets the request without them, unless the config lists that host in
``credential_hosts``. The check runs on every hop, in :class:`~proxy.net.client.UpstreamClient`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs
from yarl import URL

# Header names that carry credentials whatever the config says.
AUTH_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-esri-authorization", "x-api-key"}
)
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def host_pattern(host: str) -> re.Pattern[str]:
    """A pattern of ``host``, where a template placeholder (``{s}``) stands for one label."""
    parts = PLACEHOLDER.split(host.lower())
    return re.compile("[^.]+".join(re.escape(p) for p in parts) + r"\.?")


@attrs.frozen
class CredentialScope:
    """Where a config's credentials may go, and how to recognise them."""

    hosts: tuple[re.Pattern[str], ...]
    header_names: frozenset[str] = frozenset()
    param_names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()  # secret values: query/form fields holding them

    @classmethod
    def build(
        cls,
        hosts: Iterable[str],
        headers: Iterable[str] = (),
        params: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> CredentialScope:
        """A scope for the given host names (templates allowed) and credential names."""
        return cls(
            hosts=tuple(host_pattern(h) for h in hosts if h),
            header_names=frozenset(h.lower() for h in headers) | AUTH_HEADERS,
            param_names=frozenset(p.lower() for p in params),
            # Very short values would match ordinary parameters ("1", "png").
            values=frozenset(s for s in secrets if len(s) >= 3),
        )

    def trusts(self, url: URL) -> bool:
        """True when ``url``'s host may receive the credentials."""
        host = (url.host or "").lower()
        return any(p.fullmatch(host) for p in self.hosts)

    def strip_url(self, url: URL) -> URL:
        """``url`` without its credential query parameters."""
        if not url.query_string:
            return url
        kept = [(k, v) for k, v in url.query.items() if not self._secret(k, v)]
        if len(kept) == len(url.query):
            return url
        return url.with_query(kept)

    def strip_headers(self, headers: Mapping[str, str] | None) -> dict[str, str] | None:
        """``headers`` without credential headers."""
        if headers is None:
            return None
        return {k: v for k, v in headers.items() if k.lower() not in self.header_names}

    def strip_form(self, data: Mapping[str, str] | None) -> dict[str, str] | None:
        """A form body without credential fields."""
        if data is None:
            return None
        return {k: v for k, v in data.items() if not self._secret(k, v)}

    def _secret(self, name: str, value: str) -> bool:
        return name.lower() in self.param_names or value in self.values
