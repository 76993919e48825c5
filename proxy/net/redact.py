"""Remove secrets from URLs and texts before they reach a log, a diagnostic or an error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry secrets by convention, whatever the server config says.
SECRET_PARAM = re.compile(
    r"(token|key|apikey|api_key|access_token|password|passwd|secret|signature|sig|auth)$", re.I
)


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` with userinfo, secret-looking query values and every known secret masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = urlencode(
        [(k, MASK if SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="{}*,:/",
    )
    return redact_text(urlunsplit(parts._replace(netloc=netloc, query=query)), secrets)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every occurrence of each secret (and its URL-encoded form) masked."""
    # Very short secrets would mask unrelated text; they are masked by name instead.
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    return text
