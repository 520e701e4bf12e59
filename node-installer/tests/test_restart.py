"""restart.py, and the restart a `cri` or `revert-cri` run owes until it is done.

Cases:
- systemd mode runs `nsenter --target 1 ... systemctl restart <unit>`; success is quiet;
- a failing systemctl (exit code and stderr) and a hanging one (timeout) are HostErrors
  naming the unit and the reason;
- auto finds systemd under the host root and restarts through it; without it, it is an
  error saying what is missing, never a warning followed by success;
- none never runs anything (the operator restarts the runtime);
- the owed restart: a restart that fails after `cri` wrote the drop-in leaves the debt
  in the state file, so the next install pays it (even though no file changes) before
  `label` runs; today's main reported `cri: skipped, label: applied` with no restart;
- revert-cri owes its restart the same way.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import fakes
import pytest
from conftest import FIXTURES, NODE, MakeCtx, seed_host
from kata_installer import errors, hostpaths, restart, stages, state

CASE = "containerd2-confd"
LABEL = "katacontainers.io/kata-runtime"


class FakeSystemctl:
    """Stands in for subprocess.run: records argv, fails the first `failures` calls."""

    def __init__(self, *, failures: int = 0, hang: bool = False) -> None:
        self.failures = failures
        self.hang = hang
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if self.hang:
            raise subprocess.TimeoutExpired(argv, kw.get("timeout", 0))
        if self.failures > 0:
            self.failures -= 1
            return subprocess.CompletedProcess(argv, 1, "", "Job for containerd.service failed.")
        return subprocess.CompletedProcess(argv, 0, "", "")


def _host(tmp_path: pathlib.Path, *, systemd: bool) -> hostpaths.HostRoot:
    if systemd:
        (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    return hostpaths.HostRoot(tmp_path)


def test_systemd_restarts_through_pid_1(tmp_path: pathlib.Path) -> None:
    run = FakeSystemctl()
    restart.Restarter("systemd", _host(tmp_path, systemd=False), run=run).restart("containerd")
    assert run.calls == [
        ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--",
         "systemctl", "restart", "containerd"]
    ]  # fmt: skip


def test_failure_is_an_error_with_the_reason(tmp_path: pathlib.Path) -> None:
    r = restart.Restarter("systemd", _host(tmp_path, systemd=True), run=FakeSystemctl(failures=1))
    with pytest.raises(errors.HostError, match=r"restart containerd failed \(exit 1\): Job for"):
        r.restart("containerd")


def test_timeout_is_an_error(tmp_path: pathlib.Path) -> None:
    r = restart.Restarter(
        "systemd", _host(tmp_path, systemd=True), run=FakeSystemctl(hang=True), timeout=2
    )
    with pytest.raises(errors.HostError, match="did not finish in 2s"):
        r.restart("containerd")


def test_auto_uses_systemd_when_the_host_runs_it(tmp_path: pathlib.Path) -> None:
    run = FakeSystemctl()
    restart.Restarter("auto", _host(tmp_path, systemd=True), run=run).restart("crio")
    assert run.calls[0][-3:] == ["systemctl", "restart", "crio"]


def test_auto_without_systemd_is_an_error(tmp_path: pathlib.Path) -> None:
    run = FakeSystemctl()
    r = restart.Restarter("auto", _host(tmp_path, systemd=False), run=run)
    with pytest.raises(
        errors.HostError, match=r"cannot restart containerd: no systemd .*--restart none"
    ):
        r.restart("containerd")
    assert run.calls == []


def test_none_runs_nothing(tmp_path: pathlib.Path) -> None:
    run = FakeSystemctl()
    r = restart.Restarter("none", _host(tmp_path, systemd=True), run=run)
    r.restart("containerd")
    assert run.calls == [] and r.requests == ["containerd"]


def _ctx(make_ctx: MakeCtx, root: pathlib.Path, run: FakeSystemctl) -> stages.Context:
    ctx = make_ctx(root, FIXTURES / CASE / "installer.yaml", restart="systemd")
    ctx.restarter = restart.Restarter("systemd", ctx.host, run=run)
    return ctx


def test_failed_restart_is_owed_and_paid_by_the_next_install(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    failing = FakeSystemctl(failures=1)
    ctx = _ctx(make_ctx, root, failing)
    with pytest.raises(errors.HostError, match="restart containerd failed"):
        stages.install(ctx)
    assert state.load(ctx.host, ctx.cfg).cri.restart_owed == "containerd"
    assert LABEL not in kube.labels[NODE]

    ok = FakeSystemctl()
    ctx = _ctx(make_ctx, root, ok)
    outcome = stages.install(ctx)
    assert outcome["cri"] == "applied"  # the drop-in is already there: only the debt is paid
    assert len(ok.calls) == 1
    assert state.load(ctx.host, ctx.cfg).cri.restart_owed == ""
    assert kube.labels[NODE][LABEL] == "true"

    again = FakeSystemctl()
    assert stages.install(_ctx(make_ctx, root, again))["cri"] == "skipped"
    assert again.calls == []


def test_interrupted_revert_owes_its_restart(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    stages.install(_ctx(make_ctx, root, FakeSystemctl()))
    ctx = _ctx(make_ctx, root, FakeSystemctl(failures=1))
    with pytest.raises(errors.HostError):
        stages.uninstall(ctx)
    assert state.load(ctx.host, ctx.cfg).cri.restart_owed == "containerd"

    ok = FakeSystemctl()
    outcome = stages.uninstall(_ctx(make_ctx, root, ok))
    assert outcome["revert-cri"] == "reverted"
    assert len(ok.calls) == 1
    assert outcome["remove-artifacts"] == "reverted"
