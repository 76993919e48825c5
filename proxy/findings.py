"""What a check noticed, with what to do about it: test connection's findings and the
notes of normalizing a pasted URL share this one shape (and the API's ``Finding`` model)."""

from __future__ import annotations

import attrs


@attrs.frozen
class Finding:
    """Something noticed, with what to do about it."""

    code: str
    severity: str  # "error", "warning" or "info"
    message: str
    hint: str | None = None
