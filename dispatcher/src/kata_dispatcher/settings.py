"""The effective settings of one run, built once by `cli.py` and passed down.

Why: one frozen value object instead of flags and environment variables read deep in
the code. This module reads nothing itself: no files, no environment.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import pathlib
import re


class Stage(enum.StrEnum):
    INSTALL = "install"
    CLEANUP = "cleanup"


class LeaseMode(enum.StrEnum):
    """What a run does when another run holds the release's Lease (lease.py)."""

    WAIT = "wait"  # Helm's runs: wait for it to finish
    YIELD = "yield"  # the reconcile CronJob: step aside, the next schedule will come


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


_BUDGET = re.compile(r"^(\d+)(%?)$")


@dataclasses.dataclass(frozen=True)
class Budget:
    """--max-failed-nodes: how many selected nodes may fail or get no Job while the run
    still succeeds; a count, or a percentage of the selected nodes (rounded down)."""

    amount: int = 0
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Budget:
        """`3` or `1%`; ValueError says what is wrong."""
        match = _BUDGET.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a count (3) or a percentage (1%)")
        amount, percent = int(match.group(1)), bool(match.group(2))
        if percent and amount > 100:
            raise ValueError(f"{text!r} is more than 100%")
        return cls(amount, percent)

    def allowed(self, selected: int) -> int:
        if self.percent:
            return math.floor(selected * self.amount / 100)
        return self.amount

    def __str__(self) -> str:
        return f"{self.amount}%" if self.percent else str(self.amount)


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
            elif isinstance(value, Budget):
                value = str(value)
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
    # a ConfigMap (the release's Job templates) that co-owns every per-node Job
    anchor_configmap: str | None = None
    # skip nodes already done (nodes.DoneRule): result annotation, configuration hash
    skip_done: bool = False
    result_annotation: str = ""
    config_hash: str = ""
    done_label: str = "katacontainers.io/kata-runtime"
    # cleanup: skip nodes without the result annotation (nodes.CleanRule)
    skip_clean: bool = False
    max_failed_nodes: Budget = Budget()
    # one run at a time per release (lease.py); the CronJob of job.reconcile to delete first
    lease: str | None = None
    lease_mode: LeaseMode = LeaseMode.WAIT
    lease_duration: int = 60
    delete_cronjob: str | None = None
    wait_for_nodes: float = 0.0
    timeout: float = 0.0
    retry_budget: float = 120.0
    request_timeout: float = 30.0
    page_size: int = 500


@dataclasses.dataclass(frozen=True)
class Teardown(_Described):
    """A `delete-daemonset` run: delete the installer DaemonSet with foreground
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
