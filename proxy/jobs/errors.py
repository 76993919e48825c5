"""Errors of the jobs API (codes are stable: clients and the console read them)."""

from __future__ import annotations

from proxy.errors import Conflict, NotFound


class JobNotFound(NotFound):
    """No job with that id (404 ``not_found``)."""


class JobNotRetryable(Conflict):
    """Retry of a job with no failed cell (and not cancelled)."""

    code = "job_not_retryable"


class JobFinished(Conflict):
    """Cancel of a job that already ended done or failed."""

    code = "job_finished"


class UnknownJobKind(Conflict):
    """A job of a kind this release does not run."""

    code = "job_kind_unknown"
