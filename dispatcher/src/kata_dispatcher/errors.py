"""The dispatcher's own exceptions and exit codes.

Why: callers branch on what an API answer means (the Job already exists, it is gone,
the server is overloaded) rather than on HTTP status numbers. Only `kube.py` builds the
API exceptions, from the Kubernetes client's errors; nothing here talks to the network.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, documented in README.md."""

    OK = 0
    NODES_FAILED = 1
    USAGE = 2
    API_UNREACHABLE = 3
    TIMEOUT = 4
    TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process killed by TERM


class DispatcherError(Exception):
    """Base of every error the dispatcher raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(DispatcherError):
    """Bad flags, environment, template or cluster configuration: exit 2."""

    exit_code = ExitCode.USAGE


class ApiError(DispatcherError):
    """An API request failed; `what` names the request ("create Job ns/name")."""

    exit_code = ExitCode.API_UNREACHABLE

    def __init__(
        self, what: str, *, status: int | None = None, reason: str = "", message: str = ""
    ) -> None:
        self.what = what
        self.status = status
        self.reason = reason
        self.message = message
        detail = message or reason or "no detail"
        code = f"HTTP {status}" if status else "no HTTP status"
        super().__init__(f"{what}: {code}: {detail}")


class Transient(ApiError):
    """Worth retrying: connection trouble, 429, 5xx, or a 401/403 from an API server
    still starting (kube.py says when). `retry_after` is the server's hint."""

    def __init__(
        self,
        what: str,
        *,
        status: int | None = None,
        reason: str = "",
        message: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(what, status=status, reason=reason, message=message)
        self.retry_after = retry_after
        # Set by retry.call when the retry budget ran out, so an enclosing retry loop
        # does not start a second budget for the same outage.
        self.exhausted = False


class Conflict(ApiError):
    """HTTP 409 other than "already exists" (e.g. a failed UID precondition): re-read."""

    exit_code = ExitCode.USAGE


class AlreadyExists(Conflict):
    """HTTP 409 on create: an object with that name exists. Handled, never retried."""


class NotFound(ApiError):
    """HTTP 404."""

    exit_code = ExitCode.USAGE


class Gone(ApiError):
    """HTTP 410: a watch's resourceVersion is too old. Relist, then watch again."""


class Forbidden(ApiError):
    """HTTP 401/403 from a ready API server, on a kind of request not allowed before in
    the run: the ServiceAccount lacks a right; a configuration error (exit 2)."""

    exit_code = ExitCode.USAGE


class Invalid(ApiError):
    """HTTP 400/422: the server rejected what we sent (bad selector, bad Job)."""

    exit_code = ExitCode.USAGE
