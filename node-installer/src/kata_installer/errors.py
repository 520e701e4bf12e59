"""The few exceptions the installer raises, each mapped to one exit code.

Callers branch on meaning (bad configuration, host problem, API unreachable), never on
the text. Messages are written for an operator: they name the file, field or node.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3


class InstallerError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = EXIT_FAILED
    failed_stage = ""  # set by the stage runner: which stage raised it


class ConfigError(InstallerError):
    """installer.yaml or a flag is wrong; nothing on the host was touched."""

    exit_code = EXIT_USAGE


class HostError(InstallerError):
    """The host is not as expected (bad existing file, missing payload, unwritable path)."""

    exit_code = EXIT_FAILED


class LockTimeout(HostError):
    """Another installer holds the host lock for longer than --lock-timeout."""


class KubeUnavailable(InstallerError):
    """The Kubernetes API could not be reached or refused us."""

    exit_code = EXIT_API


class NotFound(InstallerError):
    """The API object does not exist (translated from a 404)."""


class Conflict(InstallerError):
    """The API object changed under us (a 409, or a Node re-created under its name)."""


class Unprocessable(InstallerError):
    """The API refused the request as invalid (a 422, e.g. a failed JSON-patch test)."""
