"""The effective settings of one run, built once by `cli.py` and passed down.

Why: one frozen value object instead of flags and environment variables read deep in
the code. This module reads nothing itself: no files, no environment.
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib


class Stage(enum.StrEnum):
    INSTALL = "install"
    CLEANUP = "cleanup"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class _Described:
    """`describe()` for a settings dataclass: its fields as plain values, in order, for
    the one-line startup log."""

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, pathlib.Path):
                value = str(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out


@dataclasses.dataclass(frozen=True)
class Settings(_Described):
    """Everything a run needs; see `kata-dispatcher --help` for each field's meaning."""

    template: pathlib.Path
    owner_job: str
    namespace: str
    release: str
    stage: Stage = Stage.INSTALL
    parallelism: int = 1
    nodes: tuple[str, ...] = ()
    selector: str | None = None
    kubeconfig: pathlib.Path | None = None
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    progress_interval: float = 10.0
    dry_run: bool = False
    inspect_pods: bool = False
    remove_install_jobs: str | None = None
    wait_for_nodes: float = 0.0
    timeout: float = 0.0
    retry_budget: float = 120.0
    request_timeout: float = 30.0
    page_size: int = 500


@dataclasses.dataclass(frozen=True)
class Teardown(_Described):
    """A `--delete-daemonset` run: delete the installer DaemonSet with foreground
    propagation and wait until it is gone (see `kata-dispatcher --help`)."""

    daemonset: str
    namespace: str
    kubeconfig: pathlib.Path | None = None
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    progress_interval: float = 10.0
    dry_run: bool = False
    timeout: float = 0.0
    retry_budget: float = 120.0
    request_timeout: float = 30.0
    page_size: int = 500
