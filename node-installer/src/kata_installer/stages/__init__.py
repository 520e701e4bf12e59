"""The ordered list of stages, and the runner that walks it forwards or backwards.

Each stage has a read-only `check` (True: nothing to do), an `apply` (run only when
the check fails) and a `revert` (safe to run twice; returns whether it changed
anything). install walks the list forwards, uninstall backwards; every step logs
"stage i/n <name>: applied|skipped|reverted" with the node and stage on the line. Once
`Context.stop` is set (SIGTERM), no further stage starts: errors.Terminated instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from kata_installer import config, errors, fsutil, hostpaths, kube, logs, markers, restart, runtimes
from kata_installer.runtimes import detect
from kata_installer.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Context:
    """Everything a stage may use; built once per run by the CLI (or a test)."""

    settings: Settings
    cfg: config.InstallerConfig
    host: hostpaths.HostRoot
    writer: fsutil.HostWriter
    restarter: restart.Restarter
    kube_factory: Callable[[], kube.Kube]
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    # set on SIGTERM/SIGINT: no new stage starts, waits end early (errors.Terminated)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    # DaemonSet mode: unlabel keeps the result annotation as outcome "removing", and the
    # command deletes it when the whole uninstall is done (report.removed)
    keep_result: bool = False
    _runtime: runtimes.Runtime | None = None
    _kube: kube.Kube | None = None
    _identity: kube.NodeView | None = None

    @property
    def arch(self) -> str:
        return self.settings.arch

    def runtime(self) -> runtimes.Runtime:
        if self._runtime is None:
            self._runtime = detect.detect(self.host, self.cfg)
        return self._runtime

    def identity(self) -> kube.NodeView:
        """This run's Node as first read: every later write is guarded by its uid."""
        if self._identity is None:
            if not self.settings.node_name:
                raise errors.ConfigError(
                    "the node name is unknown: pass --node-name or set "
                    "KATA_INSTALLER_NODE_NAME (the chart sets it from spec.nodeName)"
                )
            self._identity = self.kube().get_node(self.settings.node_name)
        return self._identity

    def check_stop(self, before: str) -> None:
        """errors.Terminated when a signal asked the run to stop."""
        if self.stop.is_set():
            raise errors.Terminated(f"stopped by a signal before {before}; nothing half done")

    def api_retries(self) -> int:
        """How many API calls this run retried (0 when it never talked to the API)."""
        return self._kube.retries if self._kube is not None else 0

    def kube(self) -> kube.Kube:
        if self._kube is None:
            self._kube = self.kube_factory()
        return self._kube


class Stage(Protocol):
    name: str
    revert_name: str
    read_only: bool

    def check(self, ctx: Context) -> bool: ...

    def apply(self, ctx: Context) -> None: ...

    def revert(self, ctx: Context) -> bool: ...


def _ordered() -> list[Stage]:
    # late import: the stage modules import Context from this package
    from kata_installer.stages import artifacts, cri, host_check, label  # noqa: PLC0415

    return [host_check.HostCheck(), artifacts.Artifacts(), cri.Cri(), label.Label()]


STAGES: list[Stage] = _ordered()


def by_name(name: str) -> tuple[int, Stage]:
    for i, st in enumerate(STAGES):
        if name in (st.name, st.revert_name):
            return i, st
    raise KeyError(name)


@contextlib.contextmanager
def _report_failure(index: int, name: str) -> Iterator[None]:
    try:
        yield
    except errors.Terminated:
        raise
    except errors.InstallerError as exc:
        log.error("stage %d/%d %s: failed", index, len(STAGES), name)
        exc.failed_stage = name
        raise


def run_apply(ctx: Context, stage: Stage) -> str:
    """Apply one stage if its check says so; return applied|skipped (passed: read-only)."""
    index = STAGES.index(stage) + 1
    ctx.check_stop(f"stage {index}/{len(STAGES)} {stage.name}")
    with logs.stage(stage.name), _report_failure(index, stage.name):
        if stage.read_only:
            stage.check(ctx)
            outcome = "passed"
        elif stage.check(ctx):
            outcome = "skipped"
        else:
            stage.apply(ctx)
            outcome = "applied"
        if not ctx.settings.dry_run:
            markers.mark_done(ctx.host, ctx.writer, ctx.cfg.install_name, stage.name)
        log.info("stage %d/%d %s: %s", index, len(STAGES), stage.name, outcome)
    return outcome


def run_revert(ctx: Context, stage: Stage) -> str:
    """Revert one stage; return reverted|skipped."""
    index = STAGES.index(stage) + 1
    ctx.check_stop(f"stage {index}/{len(STAGES)} {stage.revert_name}")
    with logs.stage(stage.revert_name), _report_failure(index, stage.revert_name):
        outcome = "reverted" if stage.revert(ctx) else "skipped"
        if not ctx.settings.dry_run:
            markers.clear_done(ctx.host, ctx.writer, ctx.cfg.install_name, stage.name)
            markers.forget_when_reverted(
                ctx.host,
                ctx.writer,
                ctx.cfg.install_name,
                read_only=[st.name for st in STAGES if st.read_only],
            )
        log.info("stage %d/%d %s: %s", index, len(STAGES), stage.revert_name, outcome)
    return outcome


def install(ctx: Context) -> dict[str, str]:
    return {st.name: run_apply(ctx, st) for st in STAGES}


def uninstall(ctx: Context) -> dict[str, str]:
    return {st.revert_name: run_revert(ctx, st) for st in reversed(STAGES)}
