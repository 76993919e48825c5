"""The ``quota`` field of a server config: a budget of upstream requests and bytes per period."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RESERVE = 5  # requests a test connection may use past a spent quota
MAX_WINDOW = 366 * 86_400


class QuotaConfig(BaseModel):
    """A budget of upstream requests and/or bytes per UTC day, UTC month or rolling window.

    ``requests`` and ``bytes`` are each optional (at least one is given); a request is
    admitted while both are under their limit, so the bytes of the last response may pass
    the bytes limit by that one response. ``reserve`` more requests are left to test
    connection once the quota is spent, so an operator can still diagnose the server.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    requests: int | None = Field(default=None, ge=0, le=10**12)
    bytes: int | None = Field(default=None, ge=0, le=10**18)
    period: Literal["day", "month", "rolling"]
    window_seconds: int | None = Field(default=None, ge=1, le=MAX_WINDOW)
    reserve: int = Field(default=DEFAULT_RESERVE, ge=0, le=10_000)
    warn_at: float = Field(default=0.8, gt=0, le=1)

    def model_post_init(self, context: Any) -> None:
        """Check rules across fields."""
        if self.requests is None and self.bytes is None:
            raise ValueError("a quota limits requests, bytes or both: give at least one")
        if self.period == "rolling" and self.window_seconds is None:
            raise ValueError("a rolling quota needs window_seconds")
        if self.period != "rolling" and self.window_seconds is not None:
            raise ValueError("window_seconds is for period rolling only")

    def describe(self) -> str:
        """``1000 requests and 5000000 bytes per day`` (for messages)."""
        parts = []
        if self.requests is not None:
            parts.append(f"{self.requests} requests")
        if self.bytes is not None:
            parts.append(f"{self.bytes} bytes")
        if self.period == "rolling":
            return f"{' and '.join(parts)} per rolling {self.window_seconds} s"
        return f"{' and '.join(parts)} per UTC {self.period}"
