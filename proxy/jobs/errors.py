"""Errors of the jobs API (codes are stable: clients and the console read them)."""

from __future__ import annotations

from proxy.errors import Conflict, NotAvailableYet, NotFound


class JobNotFound(NotFound):
    """No job with that id (404 ``not_found``)."""


class JobNotRetryable(Conflict):
    """Retry of a job with no failed cell (and not cancelled)."""

    code = "job_not_retryable"


class JobFinished(Conflict):
    """Cancel of a job that already ended done or failed."""

    code = "job_finished"


class UnknownJobKind(NotAvailableYet):
    """A job of a kind this service does not run (422)."""

    code = "job_kind_unknown"
