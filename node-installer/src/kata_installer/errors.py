"""The few exceptions the installer raises, each mapped to one exit code.

Callers branch on meaning (bad configuration, host problem, API unreachable), never on
the text. Messages are written for an operator: they name the file, field or node.
The exit codes are the ones kata-dispatcher uses for the same meanings: one table in
docs/contracts.md, checked against this enum and the dispatcher's by
tests/contracts/test_conventions.py.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes (docs/contracts.md, "Exit codes")."""

    OK = 0
    NODES_FAILED = 1  # this node: a stage failed on the host (recorded on the Node)
    USAGE = 2
    API_UNREACHABLE = 3
    TIMEOUT = 4  # another installer kept the host lock past --lock-timeout
    TERMINATED = 143  # 128 + SIGTERM: stopped between stages, nothing half done


class InstallerError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = ExitCode.NODES_FAILED
    failed_stage = ""  # set by the stage runner: which stage raised it


class ConfigError(InstallerError):
    """installer.yaml or a flag is wrong; nothing on the host was touched."""

    exit_code = ExitCode.USAGE


class HostError(InstallerError):
    """The host is not as expected (bad existing file, missing payload, unwritable path)."""

    exit_code = ExitCode.NODES_FAILED


class LockTimeout(HostError):
    """Another installer holds the host lock for longer than --lock-timeout."""

    exit_code = ExitCode.TIMEOUT


class Terminated(InstallerError):
    """SIGTERM or SIGINT arrived: the run stopped before its next stage (or wait)."""

    exit_code = ExitCode.TERMINATED


class KubeUnavailable(InstallerError):
    """The Kubernetes API could not be used: unreachable for the whole retry budget."""

    exit_code = ExitCode.API_UNREACHABLE


class Transient(KubeUnavailable):
    """Worth retrying: connection trouble, 429, 5xx, a 401/403 from an API server not
    ready. `retry_after` is the server's hint.
    What the caller sees once the retry budget is spent (exit 3)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KubeRefused(KubeUnavailable):
    """A ready API server refused us (401/403: a missing RBAC right, or the node
    policy), or there are no credentials to ask with: a configuration error (exit 2),
    as in the dispatcher."""

    exit_code = ExitCode.USAGE


class NotFound(InstallerError):
    """The API object does not exist (translated from a 404)."""


class Conflict(InstallerError):
    """The API object changed under us (a 409, or a Node re-created under its name)."""


class Unprocessable(InstallerError):
    """The API refused the request as invalid (a 422, e.g. a failed JSON-patch test)."""
